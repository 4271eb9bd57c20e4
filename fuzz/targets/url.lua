-- fuzz target url: where URLs and host names enter the HTTP layer
-- (lua/tlspeer/http.lua: parse_url, connect_to_host, tls.request and its
-- redirects, redirect_headers), checked by oracles rather than by crashes.
--
-- Input: a mode byte, then parts split at "\0NEXT\0": the first is a URL
-- (or a host for connect_to_host), the others are the responses served to
-- the connections tls.request makes, one each (no network: HTTPClient's
-- connect step is swapped for a fake connected stream that records what
-- the client writes).  Mode byte:
--   bits 0-1  0: tls.request(first part); 1: HTTPClient:connect_to_host(
--             first part, port) then request(method, second part as the
--             path); 2: parse_url(first part) and redirect_headers(creds,
--             first, second); 3: tls.request of a fixed URL (bit 2: https),
--             every part a response (the redirects' playground)
--   bits 2-3  mode 1: the port argument: -1, 80, 443, 8443
--   bits 4-6  the method: GET HEAD POST PUT DELETE OPTIONS PATCH GET
--   bit 7     a body ("fuzz-body") with the request
--
-- Oracles (each a fuzz_fail):
--   * parse_url: a result is sane (http or https, a host that
--     core._check_host accepts, no brackets in it, a port 1..65535, a path
--     from "/" with no space, control character or "#"), and parses to the
--     same when rebuilt;
--   * host acceptance: every host connect_to_host or parse_url accepts
--     passes core._check_host, and has no NUL, CR, LF, space or control
--     character;
--   * every request written: one request line "METHOD target HTTP/1.1"
--     with a clean target, then only the expected header lines (Host as the
--     connection's host - brackets only around IPv6 - and port, User-Agent,
--     Accept, Content-Length when there is a body, the caller's), no line
--     with a control character, the body as given;
--   * no Authorization, Cookie or Proxy-Authorization to an origin (scheme,
--     host, port) other than the caller's URL's (FUZZ_ORACLE_REDIRECT_
--     CREDENTIALS=0 turns this one off), and redirect_headers drops them
--     exactly when the origin changes;
--   * tls.request never raises, fails with nil, message, code, and with
--     ERR_INVALID_PARAMETER (no connection made) for a URL parse_url refuses;
--     HTTPClient:request raises for a path with a space or control
--     character, and takes every other non-empty one.
local tls = require "tlspeer"
local core = require "tlspeer.core"
local HTTPClient = tls.HTTPClient
local S = HTTPClient
local parse_url = HTTPClient.parse_url
local redirect_headers = HTTPClient._redirect_headers   -- nil before e2e9121
local check_host = core._check_host
if not check_host then
  -- Versions before e2e9121 have no core._check_host: the same rules, in
  -- short (LDH labels of 1-63 bytes, 253 in all; or an IP literal), so the
  -- target runs on them too.
  check_host = function(h)
    if h:match("^%d+%.%d+%.%d+%.%d+$") or (h:find(":", 1, true) and h:match("^[%x:%.]+$")) then
      return true
    end
    if #h > 253 then return nil, "too long" end
    for label in (h .. "."):gmatch("(.-)%.") do
      if #label < 1 or #label > 63 or not label:match("^[%w_]([%w_%-]*)$") or label:sub(-1) == "-" then
        return nil, "not a host name"
      end
    end
    return true
  end
end
local T = {}

local CHECK_CREDENTIALS = os.getenv("FUZZ_ORACLE_REDIRECT_CREDENTIALS") ~= "0"
local METHODS = { [0] = "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "GET" }
local CREDENTIALS = { authorization = true, cookie = true, ["proxy-authorization"] = true }
local CALLER_HEADERS = { "Authorization: Basic Zm9vOmJhcg==", "Cookie: session=fuzz",
  "Proxy-Authorization: Basic cHJveHk6cHc=", "X-Fuzz: 1" }
local BODY = "fuzz-body"

function T.init() end

local function fail(fmt, ...)
  fuzz_fail(("url: " .. fmt):format(...))
end

local function q(s) return ("%q"):format(s) end

local function clean(s)                     -- no space, no control byte
  return not s:find("[%z\1-\32\127]")
end

-- A host some code accepted.
local function check_accepted_host(host, where)
  if type(host) ~= "string" or host == "" then
    fail("%s accepted the host %s", where, tostring(host))
  end
  if not clean(host) then fail("%s accepted a host with a control character or space: %s", where, q(host)) end
  if host:find("[%[%]]") then fail("%s kept brackets in the host %s", where, q(host)) end
  local ok, why = check_host(host)
  if not ok then fail("%s accepted %s, which _check_host refuses (%s)", where, q(host), tostring(why)) end
end

local function bracket(host) return host:find(":", 1, true) and "[" .. host .. "]" or host end

-- parse_url's result, checked; returns scheme, host, port, path or nil.
local function checked_parse(url)
  local scheme, host, port, path = parse_url(url)
  if not scheme then
    if type(host) ~= "string" then fail("parse_url(%s) failed without a message", q(url)) end
    return nil
  end
  if scheme ~= "http" and scheme ~= "https" then fail("parse_url(%s): scheme %s", q(url), q(scheme)) end
  check_accepted_host(host, "parse_url(" .. q(url) .. ")")
  if math.type(port) ~= "integer" or port < 1 or port > 65535 then
    fail("parse_url(%s): port %s", q(url), tostring(port))
  end
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" or not clean(path) or path:find("#", 1, true) then
    fail("parse_url(%s): path %s", q(url), tostring(path and q(path)))
  end
  local again = scheme .. "://" .. bracket(host) .. ":" .. port .. path
  local s2, h2, p2, path2 = parse_url(again)
  if s2 ~= scheme or h2 ~= host or p2 ~= port or path2 ~= path then
    fail("parse_url(%s) = %s %s %d %s, but its rebuilt form %s parses to %s %s %s %s", q(url),
      scheme, q(host), port, q(path), q(again), tostring(s2), tostring(h2), tostring(p2), tostring(path2))
  end
  return scheme, host, port, path
end

local function origin(scheme, host, port)
  return ("%s://%s:%d"):format(scheme, host:lower(), port)
end

------------------------------------------------------- fake connections

local conns, responses

-- HTTPClient's connect step: a fake connected stream serving the next
-- response, recording what is written.
local real_start_connect = HTTPClient._start_connect
local function fake_start_connect(self)
  local response = table.remove(responses, 1) or ""
  local conn = { host = self.host, port = self.port, tls = self.use_tls, written = {} }
  conns[#conns + 1] = conn
  local pos = 1
  local t = {}
  function t:get_partial_data(n)
    if pos > #response then return nil, "the end of the fuzz response", "ERR_FILE_EOF" end
    local s = response:sub(pos, pos + n - 1)
    pos = pos + #s
    return s
  end
  function t:put_partial_data(s)
    conn.written[#conn.written + 1] = s
    return #s
  end
  function t:poll() return true end
  function t:get_status() return tls.StreamPeerTLS.STATUS_CONNECTED end
  function t:disconnect_from_stream() end
  self.peer, self.tcp = t, nil
  self.status = S.STATUS_CONNECTED
end

-- One request as written on a connection.
local function check_request(conn, i, expect)
  local where = ("request %d (to %s:%d)"):format(i, conn.host, conn.port)
  check_accepted_host(conn.host, "connection " .. i)
  local data = table.concat(conn.written)
  if data == "" then return end            -- nothing sent (a failed request)
  local head_end = data:find("\r\n\r\n", 1, true)
  if not head_end then fail("%s: no end of the head in %s", where, q(data)) end
  local head, body = data:sub(1, head_end - 1), data:sub(head_end + 4)
  local lines = {}
  for line in (head .. "\r\n"):gmatch("(.-)\r\n") do
    if line:find("[%z\1-\31\127]") then fail("%s: a control character in the line %s", where, q(line)) end
    lines[#lines + 1] = line
  end
  local method, target = lines[1]:match("^(%u+) (%S+) HTTP/1%.1$")
  if not method then fail("%s: request line %s", where, q(lines[1])) end
  if expect.method and method ~= expect.method then
    fail("%s: method %s, %s expected", where, method, expect.method)
  end
  -- A caller's path is sent as given (request() only refuses spaces and
  -- control characters); tls.request's come from parse_url: from "/".
  if not clean(target) or (not expect.target and target:sub(1, 1) ~= "/") then
    fail("%s: request target %s", where, q(target))
  end
  if expect.target and target ~= expect.target then
    fail("%s: request target %s, %s expected", where, q(target), q(expect.target))
  end
  local seen = {}
  for k = 2, #lines do
    local name, value = lines[k]:match("^([!#$%%&'*+%-.^_`|~%w]+): (.*)$")
    if not name then fail("%s: header line %s", where, q(lines[k])) end
    local lname = name:lower()
    if seen[lname] then fail("%s: two %s headers", where, name) end
    seen[lname] = value
    if not expect.allowed[lname] then fail("%s: unexpected header line %s", where, q(lines[k])) end
  end
  local default = conn.tls and 443 or 80
  local host = bracket(conn.host) .. (conn.port ~= default and (":" .. conn.port) or "")
  if seen.host ~= host then fail("%s: Host %s, %s expected", where, tostring(seen.host and q(seen.host)), q(host)) end
  if #body > 0 or seen["content-length"] then
    if seen["content-length"] ~= tostring(#body) then
      fail("%s: Content-Length %s for a body of %d bytes", where, tostring(seen["content-length"]), #body)
    end
    if body ~= "" and body ~= BODY then fail("%s: body %s", where, q(body)) end
  end
  if CHECK_CREDENTIALS and expect.origin then
    local o = origin(conn.tls and "https" or "http", conn.host, conn.port)
    if o ~= expect.origin then
      for name in pairs(CREDENTIALS) do
        if seen[name] then
          fail("%s: the caller's %s header went to %s, another origin than %s", where, name, o, expect.origin)
        end
      end
    end
  end
end

local ALLOWED = { host = true, ["user-agent"] = true, accept = true, ["content-length"] = true,
                  authorization = true, cookie = true, ["proxy-authorization"] = true,
                  ["x-fuzz"] = true, ["accept-encoding"] = true }

------------------------------------------------------------------ modes

local function run_request(url, method, with_body)
  conns = {}
  HTTPClient._start_connect = fake_start_connect
  local ok, a, b, c = pcall(tls.request, url, {
    method = method, headers = CALLER_HEADERS, body = with_body and BODY or nil,
    timeout = 5, max_redirects = 4,
  })
  HTTPClient._start_connect = real_start_connect
  if not ok then fail("tls.request(%s) raised: %s", q(url), tostring(a)) end
  fuzz_result("tls.request", a, b, c)
  local scheme, host, port = checked_parse(url)
  if not scheme then
    if a ~= nil or c ~= "ERR_INVALID_PARAMETER" then
      fail("tls.request(%s), a URL parse_url refuses: %s, %s, %s", q(url), tostring(a), tostring(b), tostring(c))
    end
    if #conns > 0 then fail("tls.request(%s) connected with a URL parse_url refuses", q(url)) end
    return
  end
  if conns[1] then
    local c1 = conns[1]
    if c1.host ~= host or c1.port ~= port or c1.tls ~= (scheme == "https") then
      fail("tls.request(%s) connected to %s:%d (tls %s), not %s", q(url), c1.host, c1.port,
        tostring(c1.tls), origin(scheme, host, port))
    end
  end
  for i, conn in ipairs(conns) do
    check_request(conn, i, { allowed = ALLOWED, origin = origin(scheme, host, port) })
  end
end

local function run_connect(host, port, method, path, with_body)
  conns = {}
  if host == "" then return end                   -- an argument error
  local client = HTTPClient.new()
  client:set_blocking_mode(true)
  HTTPClient._start_connect = fake_start_connect
  local ok, a, b, c = pcall(client.connect_to_host, client, host, port)
  if not ok then
    HTTPClient._start_connect = real_start_connect
    fail("connect_to_host(%s, %d) raised: %s", q(host), port, tostring(a))
  end
  if not a then
    HTTPClient._start_connect = real_start_connect
    fuzz_result("connect_to_host", a, b, c)
    if #conns > 0 then fail("connect_to_host(%s) failed but connected", q(host)) end
    return
  end
  check_accepted_host(client.host, "connect_to_host(" .. q(host) .. ")")
  local good = path ~= "" and clean(path)
  ok, a, b, c = pcall(client.request, client, S["METHOD_" .. method], path, { "X-Fuzz: 1" },
    with_body and BODY or nil)
  HTTPClient._start_connect = real_start_connect
  if not good then
    if ok then fail("request() took the path %s", q(path)) end
    if not tostring(a):find("bad argument #2 to 'request'", 1, true) then
      fail("request() with the path %s raised: %s", q(path), tostring(a))
    end
    if conns[1] and #conns[1].written > 0 then fail("request() with a bad path wrote to the stream") end
  else
    if not ok then fail("request(%s) raised: %s", q(path), tostring(a)) end
    fuzz_result("request", a, b, c)
  end
  for i, conn in ipairs(conns) do
    check_request(conn, i, { allowed = ALLOWED, method = method, target = good and path or nil })
  end
  client:close()
end

local function run_parse(a, b)
  checked_parse(a)
  local headers = {}
  for k, v in ipairs(CALLER_HEADERS) do headers[k] = v end
  headers[#headers + 1] = "Host: example.com"
  if not redirect_headers then return end
  local ok, kept = pcall(redirect_headers, headers, a, b)
  if not ok then fail("redirect_headers(%s, %s) raised: %s", q(a), q(b), tostring(kept)) end
  local s1, h1, p1 = parse_url(a)
  local s2, h2, p2 = parse_url(b)
  local same = s1 and s2 and origin(s1, h1, p1) == origin(s2, h2, p2)
  local names = {}
  for _, h in ipairs(kept) do names[h:match("^[^:]*"):lower()] = true end
  if same then
    if #kept ~= #headers then fail("redirect_headers(%s, %s), the same origin, dropped headers", q(a), q(b)) end
  else
    for name in pairs(CREDENTIALS) do
      if CHECK_CREDENTIALS and names[name] then
        fail("redirect_headers(%s, %s) kept %s across origins", q(a), q(b), name)
      end
    end
    if names.host then fail("redirect_headers(%s, %s) kept the caller's Host across origins", q(a), q(b)) end
    if not names["x-fuzz"] then fail("redirect_headers(%s, %s) dropped X-Fuzz", q(a), q(b)) end
  end
end

local PORTS = { [0] = -1, 80, 443, 8443 }

function T.run(data)
  local mode = data:byte(1) or 0
  local parts, from = {}, 2
  while true do
    local s, e = data:find("\0NEXT\0", from, true)
    parts[#parts + 1] = data:sub(from, (s or 0) - 1)
    if not s then break end
    from = e + 1
  end
  local method = METHODS[(mode >> 4) & 7]
  local with_body = mode & 0x80 ~= 0
  local what = mode & 3
  if what == 0 then
    responses = { table.unpack(parts, 2) }
    run_request(parts[1], method, with_body)
  elseif what == 1 then
    responses = {}
    run_connect(parts[1], PORTS[(mode >> 2) & 3], method, parts[2] or "/", with_body)
  elseif what == 2 then
    run_parse(parts[1], parts[2] or "http://localhost/")
  else
    responses = parts
    run_request(mode & 4 ~= 0 and "https://user:pw@localhost/dir/page?q=1"
      or "http://localhost:8080/dir/page?q=1", method, with_body)
  end
  responses, conns = nil, nil
end

return T
