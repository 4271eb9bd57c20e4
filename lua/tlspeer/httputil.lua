-- What HTTPClient, tls.request and HTTPRequest share: URLs and their host
-- checks, request headers, redirects (the origin rule), proxies (proxy
-- URLs, the environment as curl reads it, NO_PROXY) and the content
-- codings gzip and deflate (core._zstream, held to a size per call).
-- Pure functions and small objects: no sockets here.
local core = require "tlspeer.core"

local check_host = core._check_host

local U = {}

U.METHODS = { [0] = "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE",
              "CONNECT", "PATCH" }
U.METHOD_IDS = {}
for id, name in pairs(U.METHODS) do U.METHOD_IDS[name] = id end

U.REDIRECTS = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }

function U.argerror(n, fname, msg, level)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), (level or 2) + 1)
end

-- A header table whose lookups ignore case ("content-type" finds
-- "Content-Type"); pairs() shows the names as the server sent them.
-- tostring() shows it as the header lines, in the order they came.
function U.header_dict()
  local lower, order = {}, {}
  return setmetatable({}, {
    __index = function(t, k)
      if type(k) == "string" then
        local real = lower[k:lower()]
        if real then return rawget(t, real) end
      end
    end,
    __newindex = function(t, k, v)
      local real = lower[k:lower()]
      if real then
        rawset(t, real, v)
      else
        lower[k:lower()] = k
        order[#order + 1] = k
        rawset(t, k, v)
      end
    end,
    __tostring = function(t)
      local lines = {}
      for _, k in ipairs(order) do
        local v = rawget(t, k)
        if v ~= nil then lines[#lines + 1] = k .. ": " .. tostring(v) end
      end
      return table.concat(lines, "\n")
    end,
  })
end

-- A list of header lines (get_response_headers()): tostring() shows them.
U.HeaderList = { __tostring = function(t) return table.concat(t, "\n") end }

function U.has_crlf(s)
  return s:find("[\r\n]") ~= nil
end

-- A request target (path and query) may hold no space and no control
-- character: each would change the request line (TAB, NUL, VT, FF... as
-- much as CR and LF).
function U.bad_target(s)
  return s:find("[%z\1-\32\127]") ~= nil
end

-- s for a message, as the C core shows names: at most 200 bytes, any
-- byte but printable ASCII as \xhh.
function U.printable(s)
  local short = s:sub(1, 200):gsub(".", function(c)
    local b = c:byte()
    if b < 32 or b > 126 or b == 92 then return ("\\x%02x"):format(b) end
  end)
  return #s > 200 and short .. "..." or short
end

-- A Content-Length's digits as a byte count; nil when the number is not
-- exact as a Lua number (beyond 2^53: no body is that large).
function U.body_length(digits)
  local n = digits and tonumber(digits)
  if n and n <= 2 ^ 53 then return math.floor(n) end
  return nil
end

-- Percent-encoding for query strings (RFC 3986 unreserved kept).
function U.urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return ("%%%02X"):format(c:byte())
  end))
end

local function urldecode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- An IPv6 literal goes in brackets in a URL, a Host header, a CONNECT.
function U.bracket(host)
  return host:find(":", 1, true) and ("[" .. host .. "]") or host
end

-- "host", "host:port", "[IPv6]" or "[IPv6]:port" (a bare IPv6 literal
-- too) -> host, port (nil when none is given); or nil, message.  The host
-- must be a valid name or IP literal (no CR, LF, NUL, space...), and
-- brackets go only around an IPv6 literal.  Messages show only what passed
-- the checks, so no caller's bytes reach them raw.
function U.parse_authority(authority)
  local host, rest = authority:match("^%[([^%]]*)%](.*)$")
  local bracketed = host ~= nil
  if not host then
    if select(2, authority:gsub(":", "")) > 1 then
      host, rest = authority, ""                  -- ::1
    else
      host, rest = authority:match("^([^:]*)(.*)$")
    end
  end
  local ok, msg = check_host(host)
  if not ok then return nil, msg end
  if bracketed and not host:find(":", 1, true) then
    return nil, ("invalid host name '[%s]': brackets go only around an IPv6 address"):format(host)
  end
  if rest == "" or rest == ":" then return host, nil end
  local digits = rest:match("^:(%d+)$")
  local port = digits and #digits <= 5 and tonumber(digits)
  if not port or port < 1 or port > 65535 then
    return nil, ("invalid port after '%s' (1..65535 expected)"):format(host)
  end
  return host, port
end

-- "https://host:port/path?q" -> scheme, host, port, path; or nil, message
-- (not http or https, or a bad host or port).
function U.parse_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  scheme = scheme and scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "http:// or https:// expected"
  end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  authority = authority:gsub("^.*@", "")          -- no credentials in URLs
  local host, port = U.parse_authority(authority)
  if not host then return nil, port end
  port = port or (scheme == "https" and 443 or 80)
  path = path:gsub("#.*$", "")
  if path == "" then path = "/" elseif path:sub(1, 1) == "?" then path = "/" .. path end
  if U.bad_target(path) then
    return nil, "a space or control character in the path (percent-encode it)"
  end
  return scheme, host, port, path
end

----------------------------------------------------------------- headers

-- Godot's list of "Name: value" strings, or (ours) a { Name = value } map,
-- checked and as a list.  A name must be a token and nothing may carry a
-- CR or LF (header injection): that raises, at the caller of `fname`.
function U.normalise_headers(headers, fname, argn, level)
  local list = {}
  level = (level or 2) + 1
  if headers == nil then return list end
  if type(headers) ~= "table" then
    U.argerror(argn or 3, fname, "list of \"Name: value\" strings expected", level)
  end
  if #headers > 0 or next(headers) == nil then
    for i, h in ipairs(headers) do
      if type(h) ~= "string" or not h:match("^[!#$%%&'*+%-.^_`|~%w]+:") or U.has_crlf(h)
          or h:find("%z") then
        U.argerror(argn or 3, fname, ("header %d is not a \"Name: value\" line"):format(i), level)
      end
      list[#list + 1] = h
    end
  else
    local names = {}
    for k in pairs(headers) do names[#names + 1] = k end
    table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(names) do
      local v = headers[k]
      if type(k) ~= "string" or not k:match("^[!#$%%&'*+%-.^_`|~%w]+$")
          or (type(v) ~= "string" and type(v) ~= "number")
          or U.has_crlf(tostring(v)) or tostring(v):find("%z") then
        U.argerror(argn or 3, fname, ("header '%s' is not a name with a string value")
          :format(U.printable(tostring(k))), level)
      end
      list[#list + 1] = k .. ": " .. tostring(v)
    end
  end
  return list
end

local function header_name(h)
  return (h:match("^([^:]*)") or ""):lower():match("^%s*(.-)%s*$")
end
U.header_name = header_name

function U.has_header(list, name)
  name = name:lower()
  for _, h in ipairs(list) do
    if header_name(h) == name then return true end
  end
  return false
end

-- The value of the first header `name` in a list, or nil.
function U.header_value(list, name)
  name = name:lower()
  for _, h in ipairs(list) do
    if header_name(h) == name then return (h:match("^[^:]*:%s*(.-)%s*$")) end
  end
end

-- A copy of a header list without the names in set `drop` (lower case).
function U.without(list, drop)
  local kept = {}
  for _, h in ipairs(list) do
    if not drop[header_name(h)] then kept[#kept + 1] = h end
  end
  return kept
end

--------------------------------------------------------------- redirects

-- The headers that a request redirected from URL `from` to URL `to`
-- carries: a caller's credentials are for the origin (scheme, host, port)
-- they were given for, so a redirect to another origin drops
-- Authorization, Cookie and Proxy-Authorization, as curl does (and
-- https -> http goes on without them); a Host the caller set is for that
-- origin too (the new one gets its own).  `headers` is a list of
-- "Name: value" lines; returns it, or a copy without those.  Every
-- redirect of tls.request and of HTTPRequest goes through here.
local CREDENTIALS = { authorization = true, cookie = true, ["proxy-authorization"] = true,
                      host = true }

function U.redirect_headers(headers, from, to)
  local s1, h1, p1 = U.parse_url(from)
  local s2, h2, p2 = U.parse_url(to)
  if s1 and s1 == s2 and h1:lower() == h2:lower() and p1 == p2 then return headers end
  return U.without(headers, CREDENTIALS)
end

-- Resolves a Location header against the URL it came from.
function U.resolve_location(base, location)
  if location:match("^%a[%w+.-]*://") then return location end
  local scheme, host, port, path = U.parse_url(base)
  local origin = scheme .. "://" .. U.bracket(host) .. ":" .. port
  if location:sub(1, 2) == "//" then return scheme .. ":" .. location end
  if location:sub(1, 1) == "/" then return origin .. location end
  local dir = path:gsub("%?.*$", ""):match("^(.*/)") or "/"
  return origin .. dir .. location
end

-- What a redirect does to the method and body: 303 (but for HEAD) and
-- 301/302 after a POST become a GET without a body (and without the
-- headers that described it); 307 and 308 keep both.  Returns method id,
-- body, headers.
function U.redirect_method(status, method, body, headers)
  local name = U.METHODS[method]
  if (status == 303 and name ~= "HEAD") or ((status == 301 or status == 302) and name == "POST") then
    return U.METHOD_IDS.GET, "", U.without(headers,
      { ["content-length"] = true, ["content-type"] = true, ["transfer-encoding"] = true })
  end
  return method, body, headers
end

------------------------------------------------------------------ base64

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function U.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local d1, d2 = math.floor(n / 262144), math.floor(n / 4096) % 64
    local d3, d4 = math.floor(n / 64) % 64, n % 64
    out[#out + 1] = B64:sub(d1 + 1, d1 + 1) .. B64:sub(d2 + 1, d2 + 1)
      .. (b and B64:sub(d3 + 1, d3 + 1) or "=") .. (c and B64:sub(d4 + 1, d4 + 1) or "=")
  end
  return table.concat(out)
end

----------------------------------------------------------------- proxies

-- A proxy: { host =, port =, auth = "Basic ..." or nil }.  Only proxies
-- spoken to in plain HTTP (http://): for http:// URLs they get the request
-- in absolute form, for https:// URLs a CONNECT tunnel, inside which TLS
-- runs end to end with the origin.
local DEFAULT_PROXY_PORT = 1080          -- curl's, for a proxy URL without one

-- "http://[user:pass@]host[:port][/]" (or without the scheme, as curl
-- takes it) -> proxy, or nil, message.  The message never shows the
-- credentials.
function U.parse_proxy(value)
  if type(value) ~= "string" then return nil, "a proxy URL string expected" end
  value = value:match("^%s*(.-)%s*$")
  local scheme, rest = value:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then scheme, rest = "http", value end
  scheme = scheme:lower()
  if scheme == "https" then
    return nil, "proxies spoken to over TLS (https://) are not supported: http:// expected"
  elseif scheme:match("^socks") then
    return nil, "SOCKS proxies are not supported: http:// expected"
  elseif scheme ~= "http" then
    return nil, "http:// expected"
  end
  local authority = rest:match("^([^/?#]*)")
  local userinfo, hostport = authority:match("^(.*)@([^@]*)$")
  hostport = hostport or authority
  if hostport == "" then return nil, "no proxy host" end
  local host, port = U.parse_authority(hostport)
  if not host then return nil, port end
  local proxy = { host = host, port = port or DEFAULT_PROXY_PORT }
  if userinfo then
    local user, pass = userinfo:match("^([^:]*):(.*)$")
    user, pass = urldecode(user or userinfo), urldecode(pass or "")
    proxy.auth = "Basic " .. U.base64(user .. ":" .. pass)
  end
  return proxy
end

-- The host of set_http_proxy / set_https_proxy (HTTPClient, HTTPRequest):
-- a name or IP address ("[::1]" too), with (ours) "user:pass@" before it
-- for Basic proxy authentication (percent-encoded as in a URL).
-- -> proxy, or nil, message.
function U.proxy_of_host(host, port)
  local userinfo, name = host:match("^(.*)@([^@]*)$")
  name = name or host
  local inner = name:match("^%[(.*)%]$")
  if inner and inner:find(":", 1, true) then name = inner end
  local ok, msg = check_host(name)
  if not ok then return nil, "invalid proxy host: " .. msg end
  local proxy = { host = name, port = port }
  if userinfo then
    proxy.auth = U.parse_proxy("http://" .. userinfo .. "@proxy").auth
  end
  return proxy
end

-- A proxy without credentials of its own takes a Proxy-Authorization the
-- caller set among a request's headers (it goes to the proxy only: the
-- CONNECT, or the absolute-form request; HTTPClient never sends it to a
-- server).  Returns the proxy to use (a copy when changed).
function U.proxy_with_caller_auth(proxy, headers)
  if proxy and not proxy.auth then
    local caller = U.header_value(headers, "Proxy-Authorization")
    if caller then return { host = proxy.host, port = proxy.port, auth = caller } end
  end
  return proxy
end

-- An IP literal as a list of bytes (4 or 16), or nil.
local function ip_bytes(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a then
    local t = { tonumber(a), tonumber(b), tonumber(c), tonumber(d) }
    for i = 1, 4 do if t[i] > 255 then return nil end end
    return t
  end
  if not s:find(":", 1, true) or s:find("[^%x:.]") then return nil end
  local head, tail = s:match("^(.-)::(.*)$")
  local function groups(part)
    local g = {}
    if part == "" then return g end
    for x in (part .. ":"):gmatch("([^:]*):") do
      if x:find(".", 1, true) then            -- an IPv4 tail (::ffff:1.2.3.4)
        local v4 = ip_bytes(x)
        if not v4 then return nil end
        g[#g + 1] = v4[1] * 256 + v4[2]
        g[#g + 1] = v4[3] * 256 + v4[4]
      else
        if #x < 1 or #x > 4 then return nil end
        g[#g + 1] = tonumber(x, 16)
      end
    end
    return g
  end
  local all
  if head then
    local h, t = groups(head), groups(tail)
    if not h or not t or #h + #t > 7 then return nil end
    all = h
    for _ = 1, 8 - #h - #t do all[#all + 1] = 0 end
    for _, v in ipairs(t) do all[#all + 1] = v end
  else
    all = groups(s)
    if not all or #all ~= 8 then return nil end
  end
  local bytes = {}
  for _, v in ipairs(all) do
    bytes[#bytes + 1] = math.floor(v / 256)
    bytes[#bytes + 1] = v % 256
  end
  return bytes
end
U.ip_bytes = ip_bytes

-- Whether the first `bits` bits of two byte lists agree.
local function same_prefix(x, y, bits)
  for i = 1, #x do
    if bits <= 0 then return true end
    if bits >= 8 then
      if x[i] ~= y[i] then return false end
    else
      local unit = 2 ^ (8 - bits)
      return math.floor(x[i] / unit) == math.floor(y[i] / unit)
    end
    bits = bits - 8
  end
  return true
end

-- Whether `host` is in a NO_PROXY list, as curl reads it: names separated
-- by commas (or spaces); "*" alone matches every host; a name matches
-- itself and the names under it ("example.com" and ".example.com" both
-- match example.com and www.example.com, not notexample.com); an IP
-- address matches itself, or an address in its range with CIDR ("10.0.0.0/8",
-- "fd00::/8"); IPv6 addresses without brackets; case does not matter.
function U.no_proxy_match(host, list)
  host = host:lower():gsub("^%[(.*)%]$", "%1"):gsub("%.$", "")
  local host_ip = ip_bytes(host)
  for entry in list:gmatch("[^,%s]+") do
    if entry == "*" then return true end
    entry = entry:lower():gsub("^%[(.*)%]$", "%1")
    local addr, bits = entry:match("^([^/]+)/(%d+)$")
    if host_ip then
      local ip = ip_bytes(addr or entry)
      if ip and #ip == #host_ip then
        local n = bits and tonumber(bits) or #ip * 8
        if n <= #ip * 8 and same_prefix(ip, host_ip, n) then return true end
      end
    elseif not addr then
      entry = entry:gsub("^%.", ""):gsub("%.$", "")
      if entry ~= "" and (host == entry or host:sub(-#entry - 1) == "." .. entry) then
        return true
      end
    end
  end
  return false
end

-- The proxy for a request to scheme://host, or false for none, or nil,
-- message when the proxy setting is bad.
--   proxy_opt: a proxy URL (the caller's), false (no proxy), or nil: then
--     the environment, as curl reads it: https_proxy / HTTPS_PROXY for
--     https:// URLs, http_proxy for http:// ones (HTTP_PROXY too, except in
--     a CGI program, where a request's "Proxy:" header becomes HTTP_PROXY:
--     REQUEST_METHOD set), then all_proxy / ALL_PROXY; no_proxy / NO_PROXY.
--   no_proxy_opt: a NO_PROXY list that replaces the environment's.
function U.proxy_for(scheme, host, proxy_opt, no_proxy_opt, getenv)
  if proxy_opt == false then return false end
  getenv = getenv or os.getenv
  local value, source, no_proxy
  if proxy_opt ~= nil then
    value, source, no_proxy = proxy_opt, "option 'proxy'", no_proxy_opt
  else
    local names = scheme == "https" and { "https_proxy", "HTTPS_PROXY" } or { "http_proxy" }
    if scheme ~= "https" and not getenv("REQUEST_METHOD") then names[#names + 1] = "HTTP_PROXY" end
    names[#names + 1] = "all_proxy"
    names[#names + 1] = "ALL_PROXY"
    for _, name in ipairs(names) do
      local v = getenv(name)
      if v and v ~= "" then value, source = v, "$" .. name; break end
    end
    no_proxy = no_proxy_opt
    if no_proxy == nil then no_proxy = getenv("no_proxy") or getenv("NO_PROXY") end
  end
  if value == nil or value == "" then return false end
  if no_proxy and U.no_proxy_match(host, no_proxy) then return false end
  local proxy, why = U.parse_proxy(value)
  if not proxy then return nil, ("invalid proxy in %s (%s)"):format(source, why) end
  return proxy
end

------------------------------------------------------- content codings

-- A decoder of a body's Content-Encoding (gzip, x-gzip, deflate), or nil
-- for any other coding (the body is then passed on as it came).
-- "deflate" is a zlib stream (RFC 9110), or raw deflate from servers that
-- send that instead: the first two bytes tell.
--   d:feed(data, max_out) -> decoded (at most max_out bytes), more
--     (decoded output is held back: call d:feed("", max_out) again before
--     more input); or nil, message.  A stream that expands past max_out
--     per call costs no more memory or time than max_out per call.
--   d:finish() -> true, or nil, message when the stream did not end.
local Decoder = {}
Decoder.__index = Decoder

function U.decoder(coding)
  coding = coding and coding:lower():match("^%s*(.-)%s*$")
  if coding == "gzip" or coding == "x-gzip" then
    return setmetatable({ z = core._zstream("inflate", "gzip"), coding = coding, seen = 0 }, Decoder)
  elseif coding == "deflate" then
    return setmetatable({ coding = coding, head = "", seen = 0 }, Decoder)
  end
  return nil
end

function Decoder:feed(data, max_out)
  self.seen = self.seen + #data
  if not self.z then                   -- deflate: zlib or raw, by its header
    self.head = self.head .. data
    if #self.head < 2 then return "", false end
    local cmf, flg = self.head:byte(1, 2)
    local zlib = cmf % 16 == 8 and cmf < 128 and (cmf * 256 + flg) % 31 == 0
    self.z = core._zstream("inflate", zlib and "zlib" or "raw")
    data, self.head = self.head, nil
  end
  if self.ended then return "", false end
  local out, state = self.z:update(data, "none", max_out)
  if not out then
    self.failed = true
    return nil, ("the %s body is corrupt: %s"):format(self.coding, state)
  end
  if state == "end" then self.ended = true end
  return out, state == "more"
end

function Decoder:finish()
  if self.ended or (self.seen == 0) then return true end
  return nil, ("the %s body ended before its compressed stream did (cut short)"):format(self.coding)
end

function Decoder:close()
  if self.z then self.z:close() end
end

return U
