-- HTTPClient (Godot 4 semantics) and tls.request: HTTP/1.1 in Lua, on top of
-- the StreamPeer methods of StreamPeerTCP / StreamPeerTLS.
--
-- HTTPClient is poll-driven: connect_to_host(), then poll() until
-- STATUS_CONNECTED; request(), then poll() until the response headers are in
-- (STATUS_BODY, or STATUS_CONNECTED when there is no body); then
-- read_response_body_chunk() until the status leaves STATUS_BODY.  With
-- set_blocking_mode(true) each of those waits (in poll(2)) instead.
local core = require "tlspeer.core"
local check_options = require("tlspeer.options").check

local StreamPeerTCP, StreamPeerTLS, TLSOptions =
  core.StreamPeerTCP, core.StreamPeerTLS, core.TLSOptions
local now, wait_sockets, check_host = core._now, core._wait, core._check_host
local is_integer = core._is_integer

local MAX_HEADER_BYTES = 64 * 1024     -- status line + headers (+ trailers)
local MAX_HEADERS = 256
local MAX_CHUNK_LINE = 4096
local READ_SIZE = 65536
local HEAD_READ = 16384          -- bytes one poll reads while waiting for the head
local USER_AGENT = "tlspeer/scm (Lua)"

local HTTPClient = {
  METHOD_GET = 0, METHOD_HEAD = 1, METHOD_POST = 2, METHOD_PUT = 3,
  METHOD_DELETE = 4, METHOD_OPTIONS = 5, METHOD_TRACE = 6, METHOD_CONNECT = 7,
  METHOD_PATCH = 8, METHOD_MAX = 9,

  STATUS_DISCONNECTED = 0, STATUS_RESOLVING = 1, STATUS_CANT_RESOLVE = 2,
  STATUS_CONNECTING = 3, STATUS_CANT_CONNECT = 4, STATUS_CONNECTED = 5,
  STATUS_REQUESTING = 6, STATUS_BODY = 7, STATUS_CONNECTION_ERROR = 8,
  STATUS_TLS_HANDSHAKE_ERROR = 9,

  RESPONSE_CONTINUE = 100, RESPONSE_SWITCHING_PROTOCOLS = 101,
  RESPONSE_OK = 200, RESPONSE_CREATED = 201, RESPONSE_ACCEPTED = 202,
  RESPONSE_NO_CONTENT = 204, RESPONSE_PARTIAL_CONTENT = 206,
  RESPONSE_MOVED_PERMANENTLY = 301, RESPONSE_FOUND = 302, RESPONSE_SEE_OTHER = 303,
  RESPONSE_NOT_MODIFIED = 304, RESPONSE_TEMPORARY_REDIRECT = 307,
  RESPONSE_PERMANENT_REDIRECT = 308, RESPONSE_BAD_REQUEST = 400,
  RESPONSE_UNAUTHORIZED = 401, RESPONSE_FORBIDDEN = 403, RESPONSE_NOT_FOUND = 404,
  RESPONSE_METHOD_NOT_ALLOWED = 405, RESPONSE_REQUEST_TIMEOUT = 408,
  RESPONSE_TOO_MANY_REQUESTS = 429, RESPONSE_INTERNAL_SERVER_ERROR = 500,
  RESPONSE_NOT_IMPLEMENTED = 501, RESPONSE_BAD_GATEWAY = 502,
  RESPONSE_SERVICE_UNAVAILABLE = 503, RESPONSE_GATEWAY_TIMEOUT = 504,
}
HTTPClient.__index = HTTPClient

local METHODS = { [0] = "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE",
                  "CONNECT", "PATCH" }
local S = HTTPClient     -- status names, shorter

local STATUS_NAMES = {}
for k, v in pairs(HTTPClient) do
  if k:match("^STATUS_") then STATUS_NAMES[v] = k:sub(8):lower():gsub("_", " ") end
end

----------------------------------------------------------------- helpers

local function argerror(n, fname, msg)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 3)
end

-- A header table whose lookups ignore case ("content-type" finds
-- "Content-Type"); pairs() shows the names as the server sent them.
-- tostring() shows it as the header lines, in the order they came.
local function header_dict()
  local lower, order = {}, {}
  return setmetatable({}, {
    __index = function(_, k)
      if type(k) == "string" then
        local real = lower[k:lower()]
        if real then return rawget(_, real) end
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

-- get_response_headers()'s list: tostring() shows its lines.
local HeaderList = { __tostring = function(t) return table.concat(t, "\n") end }

local function has_crlf(s)
  return s:find("[\r\n]") ~= nil
end

-- A request target (path and query) may hold no space and no control
-- character: each would change the request line (TAB, NUL, VT, FF... as
-- much as CR and LF).
local function bad_target(s)
  return s:find("[%z\1-\32\127]") ~= nil
end

-- s for a message, as the C core shows names: at most 200 bytes, any
-- byte but printable ASCII as \xhh.
local function printable(s)
  local short = s:sub(1, 200):gsub(".", function(c)
    local b = c:byte()
    if b < 32 or b > 126 or b == 92 then return ("\\x%02x"):format(b) end
  end)
  return #s > 200 and short .. "..." or short
end

-- A Content-Length's digits as a byte count; nil when the number is not
-- exact as a Lua number (beyond 2^53: no body is that large).
local function body_length(digits)
  local n = digits and tonumber(digits)
  if n and n <= 2 ^ 53 then return math.floor(n) end
  return nil
end

-- Percent-encoding for query strings (RFC 3986 unreserved kept).
local function urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return ("%%%02X"):format(c:byte())
  end))
end

-- "host", "host:port", "[IPv6]" or "[IPv6]:port" (a bare IPv6 literal
-- too) -> host, port (nil when none is given); or nil, message.  The host
-- must be a valid name or IP literal (no CR, LF, NUL, space...), and
-- brackets go only around an IPv6 literal.  Messages show only what passed
-- the checks, so no caller's bytes reach them raw.
local function parse_authority(authority)
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

----------------------------------------------------------------- objects

function HTTPClient.new()
  return setmetatable({
    status = S.STATUS_DISCONNECTED,
    chunk_size = 65536,
    blocking = false,
    timeout = 30,
  }, HTTPClient)
end

function HTTPClient:__tostring()
  local host = self.host and (self.host:find(":", 1, true) and ("[" .. self.host .. "]") or self.host)
  local where = host and ((self.use_tls and "https://" or "http://") .. host
    .. ":" .. self.port) or "nowhere"
  return ("HTTPClient (%s, %s)"):format(STATUS_NAMES[self.status], where)
end

HTTPClient.__close = function(self) self:close() end
-- Nothing to free by hand: the sockets are collected with their objects.
HTTPClient.__gc = function() end

function HTTPClient:get_status()
  return self.status
end

-- Ours: why the status is an error one (message, code), or nothing.
function HTTPClient:get_error()
  if self.err then return self.err[1], self.err[2] end
end

function HTTPClient:_fail(status, msg, code)
  self.status = status
  self.err = { msg, code }
  if self.peer and self.peer ~= self.tcp then pcall(self.peer.disconnect_from_stream, self.peer) end
  if self.tcp then pcall(self.tcp.disconnect_from_host, self.tcp) end
  self.peer, self.tcp = nil, nil
end

function HTTPClient:set_blocking_mode(enabled)
  if type(enabled) ~= "boolean" then argerror(1, "set_blocking_mode", "boolean expected") end
  self.blocking = enabled
end

function HTTPClient:is_blocking_mode_enabled()
  return self.blocking
end

-- Ours: how long blocking calls wait, in seconds (30 by default).
function HTTPClient:set_timeout(seconds)
  if type(seconds) ~= "number" or seconds < 0 then argerror(1, "set_timeout", "seconds expected") end
  self.timeout = seconds
end

function HTTPClient:set_read_chunk_size(n)
  if not is_integer(n) or n < 256 or n > 16 * 1024 * 1024 then
    argerror(1, "set_read_chunk_size", "integer from 256 to 16777216 expected")
  end
  self.chunk_size = n
end

function HTTPClient:get_read_chunk_size()
  return self.chunk_size
end

--------------------------------------------------------------- connecting

-- client:connect_to_host(host, port = -1, tls_options = nil)
-- `host` is a name or IP address ("[::1]" too), or a URL's start:
-- "https://example.com:8443/..." (the scheme picks TLS; a port there is
-- used when the `port` argument is -1 or the same).
function HTTPClient:connect_to_host(host, port, tls_options)
  if type(host) ~= "string" or host == "" then argerror(1, "connect_to_host", "host name expected") end
  port = port == nil and -1 or port
  if not is_integer(port) or port < -1 or port == 0 or port > 65535 then
    argerror(2, "connect_to_host", "port 1..65535 or -1 expected")
  end
  if type(tls_options) == "boolean" then
    -- Godot 3's connect_to_host(host, port, use_ssl).
    argerror(3, "connect_to_host", "TLSOptions expected, got boolean: Godot 3's use_ssl = true "
      .. "is tls.TLSOptions.client() here, or an \"https://\" host")
  end
  if tls_options ~= nil and getmetatable(tls_options) ~= getmetatable(TLSOptions.client_unsafe()) then
    argerror(3, "connect_to_host", "TLSOptions expected")
  end
  local use_tls = false
  local scheme, rest = host:match("^(%a[%w+.-]*)://(.*)$")
  if scheme then
    scheme = scheme:lower()
    if scheme == "https" then use_tls = true
    elseif scheme ~= "http" then
      return nil, ("unsupported scheme '%s' (http or https)"):format(scheme), "ERR_INVALID_PARAMETER"
    end
    host = rest
  end
  -- Checked here, before any connection: the name goes into the Host
  -- header and SNI.
  local url_port
  host, url_port = parse_authority((host:gsub("[/?#].*$", "")))
  if not host then return nil, url_port, "ERR_INVALID_PARAMETER" end
  if url_port then
    if port ~= -1 and port ~= url_port then
      return nil, ("two ports for '%s': %d in the host string and %d as the argument")
        :format(host, url_port, port), "ERR_INVALID_PARAMETER"
    end
    port = url_port
  end
  if tls_options ~= nil then
    if tls_options:is_server() then
      return nil, "connect_to_host needs client TLSOptions, not server ones",
        "ERR_INVALID_PARAMETER"
    end
    use_tls = true
  end
  if port == -1 then port = use_tls and 443 or 80 end
  self:close()
  self.host, self.port, self.use_tls, self.tls_options = host, port, use_tls, tls_options
  self.err = nil
  self.status = S.STATUS_RESOLVING
  if self.blocking then self:_block_until(function() return self.status ~= S.STATUS_RESOLVING
    and self.status ~= S.STATUS_CONNECTING end) end
  return true
end

function HTTPClient:close()
  if self.peer and self.peer ~= self.tcp then pcall(self.peer.disconnect_from_stream, self.peer) end
  if self.tcp then pcall(self.tcp.disconnect_from_host, self.tcp) end
  self.tcp, self.peer = nil, nil
  self.status = S.STATUS_DISCONNECTED
  self.inbuf, self.outbuf = nil, nil
  self.response = nil
end

-- Starts the connect: a name is looked up on a worker meanwhile
-- (STATUS_RESOLVING for real), an IP address connects at once.
function HTTPClient:_start_connect()
  local tcp = StreamPeerTCP.new()
  local ok, msg, code = tcp:connect_to_host(self.host, self.port)
  if not ok then
    return self:_fail(code == "ERR_CANT_RESOLVE" and S.STATUS_CANT_RESOLVE or S.STATUS_CANT_CONNECT,
      msg, code)
  end
  tcp:set_no_delay(true)
  self.tcp, self.peer = tcp, tcp
  self.status = tcp:is_resolving() and S.STATUS_RESOLVING or S.STATUS_CONNECTING
end

function HTTPClient:_advance_connect()
  local tcp = self.tcp
  tcp:poll()
  local ts = tcp:get_status()
  if ts == StreamPeerTCP.STATUS_ERROR then
    local msg, code = tcp:get_error()
    if code == "ERR_CANT_RESOLVE" then
      return self:_fail(S.STATUS_CANT_RESOLVE, msg, code)
    end
    return self:_fail(S.STATUS_CANT_CONNECT, msg or ("cannot connect to " .. self.host),
      "ERR_CANT_CONNECT")
  end
  if self.status == S.STATUS_RESOLVING and not tcp:is_resolving() then
    self.status = S.STATUS_CONNECTING
  end
  if ts ~= StreamPeerTCP.STATUS_CONNECTED then return end
  if not self.use_tls then
    self.status = S.STATUS_CONNECTED
    return
  end
  if self.peer == tcp then
    local options = self.tls_options
    if not options then
      local msg, code
      options, msg, code = TLSOptions.client()
      if not options then return self:_fail(S.STATUS_TLS_HANDSHAKE_ERROR, msg, code) end
    end
    local peer = StreamPeerTLS.new()
    local ok, msg, code = peer:connect_to_stream(tcp, self.host, options)
    if not ok then return self:_fail(S.STATUS_TLS_HANDSHAKE_ERROR, msg, code) end
    self.peer = peer
  end
  local peer = self.peer
  peer:poll()
  local ps = peer:get_status()
  if ps == StreamPeerTLS.STATUS_CONNECTED then
    self.status = S.STATUS_CONNECTED
  elseif ps ~= StreamPeerTLS.STATUS_HANDSHAKING then
    local msg, code = peer:get_error()
    self:_fail(S.STATUS_TLS_HANDSHAKE_ERROR, msg or "the TLS handshake failed", code or "FAILED")
  end
end

----------------------------------------------------------------- I/O

-- Reads what has arrived into inbuf.  Returns bytes read, or nil at the end
-- of the stream (msg, code for an error).
function HTTPClient:_fill(max)
  local data, msg, code = self.peer:get_partial_data(max or READ_SIZE)
  if not data then
    if code == "ERR_FILE_EOF" then return nil end
    return nil, msg, code
  end
  if #data > 0 then
    local buf = self.inbuf
    if buf.pos > 1 and buf.pos > #buf.data then
      buf.data, buf.pos = data, 1
    else
      buf.data = buf.data:sub(buf.pos) .. data
      buf.pos = 1
    end
  end
  return #data
end

function HTTPClient:_flush()
  local out = self.outbuf
  while out and out[1] do
    local n, msg, code = self.peer:put_partial_data(out[1])
    if not n then return nil, msg, code end
    if n == 0 then return true end
    if n < #out[1] then
      out[1] = out[1]:sub(n + 1)
      return true
    end
    table.remove(out, 1)
  end
  return true
end

-- Blocks in poll(2) until done() or the timeout; for blocking mode.
function HTTPClient:_block_until(done)
  local deadline = now() + self.timeout
  while true do
    self:_step()
    if done() then return true end
    local left = deadline - now()
    if left <= 0 then
      local connecting = self.status == S.STATUS_RESOLVING or self.status == S.STATUS_CONNECTING
      self:_fail(connecting and S.STATUS_CANT_CONNECT or S.STATUS_CONNECTION_ERROR,
        ("timed out after %g s (%s)"):format(self.timeout, STATUS_NAMES[self.status]),
        "ERR_TIMEOUT")
      return false
    end
    local readers, writers = {}, {}
    if self.peer then
      readers[1] = self.peer
      if self.status == S.STATUS_CONNECTING or (self.outbuf and self.outbuf[1]) then
        writers[1] = self.peer
      end
    end
    wait_sockets(readers, writers, math.min(left, 0.25))
  end
end

------------------------------------------------------------- requests

local function normalise_headers(headers, fname)
  local list = {}
  if headers == nil then return list end
  if type(headers) ~= "table" then argerror(3, fname, "list of \"Name: value\" strings expected") end
  if #headers > 0 or next(headers) == nil then
    for i, h in ipairs(headers) do
      if type(h) ~= "string" or not h:match("^[!#$%%&'*+%-.^_`|~%w]+:") or has_crlf(h) then
        argerror(3, fname, ("header %d is not a \"Name: value\" line"):format(i))
      end
      list[#list + 1] = h
    end
  else
    local names = {}
    for k in pairs(headers) do names[#names + 1] = k end
    table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(names) do
      local v = headers[k]
      if type(k) ~= "string" or k:find("[:%s]") or (type(v) ~= "string" and type(v) ~= "number")
        or has_crlf(tostring(v)) then
        argerror(3, fname, ("header '%s' is not a name with a string value"):format(tostring(k)))
      end
      list[#list + 1] = k .. ": " .. tostring(v)
    end
  end
  return list
end

local function has_header(list, name)
  name = name:lower()
  for _, h in ipairs(list) do
    if h:match("^([^:]+)"):lower():match("^%s*(.-)%s*$") == name then return true end
  end
  return false
end

-- client:request(method, url, headers, body = "")
function HTTPClient:request(method, url, headers, body)
  if not is_integer(method) or not METHODS[method] then
    argerror(1, "request", "METHOD_* value expected")
  end
  if type(url) ~= "string" or url == "" or bad_target(url) then
    argerror(2, "request", "URL path expected (no spaces or control characters)")
  end
  local list = normalise_headers(headers, "request")
  body = body == nil and "" or body
  if type(body) ~= "string" then argerror(4, "request", "string expected") end
  if self.status ~= S.STATUS_CONNECTED then
    return nil, ("cannot send a request while %s"):format(STATUS_NAMES[self.status]),
      "ERR_UNCONFIGURED"
  end
  local name = METHODS[method]
  local lines = { name .. " " .. url .. " HTTP/1.1" }
  if not has_header(list, "Host") then
    local h = self.host:find(":") and ("[" .. self.host .. "]") or self.host
    local default = self.use_tls and 443 or 80
    lines[#lines + 1] = "Host: " .. h .. (self.port ~= default and (":" .. self.port) or "")
  end
  if not has_header(list, "User-Agent") then lines[#lines + 1] = "User-Agent: " .. USER_AGENT end
  if not has_header(list, "Accept") then lines[#lines + 1] = "Accept: */*" end
  if not has_header(list, "Content-Length") and not has_header(list, "Transfer-Encoding")
      and (#body > 0 or name == "POST" or name == "PUT" or name == "PATCH") then
    lines[#lines + 1] = "Content-Length: " .. #body
  end
  for _, h in ipairs(list) do lines[#lines + 1] = h end
  lines[#lines + 1] = "\r\n"
  self.outbuf = { table.concat(lines, "\r\n") }
  if #body > 0 then self.outbuf[2] = body end
  self.inbuf = { data = "", pos = 1 }
  self.response = { method = name }
  self.err = nil
  self.status = S.STATUS_REQUESTING
  local ok, msg, code = self:_flush()
  if not ok then
    self:_fail(S.STATUS_CONNECTION_ERROR, msg, code)
    return nil, msg, code
  end
  if self.blocking then
    self:_block_until(function() return self.status ~= S.STATUS_REQUESTING end)
  end
  return true
end

-- Parses the status line and headers once they are all in.  Returns true
-- when done, false to wait for more; fails the client on bad input.
function HTTPClient:_parse_head()
  local buf = self.inbuf
  while true do
    local data = buf.data
    local s, e = data:find("\r?\n\r?\n", buf.pos)
    if not s then
      if #data - buf.pos + 1 > MAX_HEADER_BYTES then
        self:_fail(S.STATUS_CONNECTION_ERROR, ("the response headers are larger than %d bytes")
          :format(MAX_HEADER_BYTES), "ERR_INVALID_DATA")
      end
      return false
    end
    if s - buf.pos > MAX_HEADER_BYTES then
      self:_fail(S.STATUS_CONNECTION_ERROR, ("the response headers are larger than %d bytes")
        :format(MAX_HEADER_BYTES), "ERR_INVALID_DATA")
      return false
    end
    local head = data:sub(buf.pos, s - 1)
    buf.pos = e + 1
    local status_line, rest = head:match("^([^\r\n]*)\r?\n?(.*)$")
    -- Three digits, then a space and the reason phrase, or nothing.
    local major, minor, code = status_line:match("^HTTP/(%d)%.(%d) (%d%d%d)$")
    if not code then major, minor, code = status_line:match("^HTTP/(%d)%.(%d) (%d%d%d) ") end
    if not code then
      self:_fail(S.STATUS_CONNECTION_ERROR, ("malformed status line %q"):format(status_line:sub(1, 80)),
        "ERR_INVALID_DATA")
      return false
    end
    code = tonumber(code)
    local headers, dict = {}, header_dict()
    for line in rest:gmatch("[^\r\n]+") do
      local name, value = line:match("^([^:%s][^:]*):%s*(.-)%s*$")
      if not name or name:find("%s") then
        self:_fail(S.STATUS_CONNECTION_ERROR, ("malformed header line %q"):format(line:sub(1, 80)),
          "ERR_INVALID_DATA")
        return false
      end
      if #headers >= MAX_HEADERS then
        self:_fail(S.STATUS_CONNECTION_ERROR, ("more than %d response headers"):format(MAX_HEADERS),
          "ERR_INVALID_DATA")
        return false
      end
      headers[#headers + 1] = name .. ": " .. value
      local old = dict[name]
      dict[name] = old and (old .. ", " .. value) or value
    end
    if code >= 100 and code < 200 and code ~= 101 then
      -- 100 Continue and friends: the real response follows.
    else
      local r = self.response
      r.code, r.headers, r.dict = code, headers, dict
      r.http10 = major == "1" and minor == "0"
      return self:_setup_body()
    end
  end
end

-- The last coding of a Transfer-Encoding value (all its header lines,
-- joined with ", "), in lower case without parameters; nil when it lists
-- none.
local function final_coding(te)
  local last
  for item in te:gmatch("[^,]+") do
    local name = item:match("^%s*([^;%s]+)")
    if name then last = name:lower() end
  end
  return last
end

function HTTPClient:_setup_body()
  local r, dict = self.response, self.response.dict
  local conn = (dict["Connection"] or ""):lower()
  r.keep_alive = not conn:find("close") and (not r.http10 or conn:find("keep%-alive") ~= nil)
  r.length = -1
  local te = dict["Transfer-Encoding"]
  if r.method == "HEAD" or r.code == 204 or r.code == 304 or r.code == 101 then
    -- No body follows; for HEAD, Content-Length still tells the size a GET
    -- would have.
    if r.method == "HEAD" and dict["Content-Length"] then
      r.length = body_length(dict["Content-Length"]:match("^%s*(%d+)")) or -1
    end
    r.done = true
  elseif te then
    -- RFC 9112, 6.1 and 6.3: chunked only when it is the final coding,
    -- otherwise the body runs until the server closes.  Transfer-Encoding
    -- overrides Content-Length; a response with both (request smuggling,
    -- or a broken intermediary), or an HTTP/1.0 one with Transfer-Encoding,
    -- is the last on its connection.
    local final = final_coding(te)
    if not final then
      self:_fail(S.STATUS_CONNECTION_ERROR, ("invalid Transfer-Encoding %q"):format(te:sub(1, 40)),
        "ERR_INVALID_DATA")
      return false
    end
    if dict["Content-Length"] or r.http10 then r.keep_alive = false end
    if final == "chunked" then
      r.chunked = true
      r.chunk_left = 0
      r.chunk_state = "size"
    else
      r.until_close = true
      r.keep_alive = false
    end
  elseif dict["Content-Length"] then
    -- Repeated Content-Length headers must agree (RFC 9112, 6.3).
    local cl, first, ok = dict["Content-Length"], nil, true
    for v in cl:gmatch("[^,]+") do
      local n = v:match("^%s*(%d+)%s*$")
      if not n or (first and n ~= first) then ok = false end
      first = first or n
    end
    r.length = ok and first and body_length(first) or nil
    if not r.length then
      self:_fail(S.STATUS_CONNECTION_ERROR, ("invalid Content-Length %q"):format(cl:sub(1, 40)),
        "ERR_INVALID_DATA")
      return false
    end
    r.left = r.length
    r.done = r.length == 0
  else
    r.until_close = true
    r.keep_alive = false
  end
  if r.done then self:_body_done() else self.status = S.STATUS_BODY end
  return true
end

function HTTPClient:_body_done()
  local r = self.response
  r.done = true
  if r.keep_alive then
    self.status = S.STATUS_CONNECTED
  else
    if self.peer and self.peer ~= self.tcp then pcall(self.peer.disconnect_from_stream, self.peer) end
    if self.tcp then pcall(self.tcp.disconnect_from_host, self.tcp) end
    self.tcp, self.peer = nil, nil
    self.status = S.STATUS_DISCONNECTED
  end
end

------------------------------------------------------------------ poll

function HTTPClient:_step()
  local st = self.status
  if st == S.STATUS_RESOLVING and not self.tcp then
    self:_start_connect()
  elseif st == S.STATUS_RESOLVING or st == S.STATUS_CONNECTING then
    self:_advance_connect()
  elseif st == S.STATUS_REQUESTING then
    local ok, msg, code = self:_flush()
    if not ok then return self:_fail(S.STATUS_CONNECTION_ERROR, msg, code) end
    -- At most one record per poll while looking for the head: a poll
    -- stays short (the body that follows is read by its own calls).
    local budget = HEAD_READ
    while self.status == S.STATUS_REQUESTING and budget > 0 do
      local n, m, c = self:_fill(budget)
      if n == nil then
        if self:_parse_head() then return end
        if self.status ~= S.STATUS_REQUESTING then return end
        return self:_fail(S.STATUS_CONNECTION_ERROR, m or
          "the server closed the connection before sending a response", c or "ERR_CONNECTION_ERROR")
      end
      if self:_parse_head() or self.status ~= S.STATUS_REQUESTING or n == 0 then return end
      budget = budget - n
    end
  elseif st == S.STATUS_CONNECTED then
    -- An idle keep-alive connection: notice when the server closes it.
    local peer = self.peer
    if peer then
      peer:poll()
      local ps = peer:get_status()
      if (peer == self.tcp and ps ~= StreamPeerTCP.STATUS_CONNECTED)
          or (peer ~= self.tcp and ps ~= StreamPeerTLS.STATUS_CONNECTED) then
        self:close()
      end
    end
  end
end

-- client:poll(): one non-blocking step (in blocking mode: until the status
-- changes).  Returns true, or nil, message, code when not connected at all.
function HTTPClient:poll()
  if self.status == S.STATUS_DISCONNECTED and not self.host then
    return nil, "not connected: call connect_to_host() first", "ERR_UNCONFIGURED"
  end
  if self.blocking and (self.status == S.STATUS_RESOLVING or self.status == S.STATUS_CONNECTING
      or self.status == S.STATUS_REQUESTING) then
    local from = self.status
    self:_block_until(function() return self.status ~= from end)
  else
    self:_step()
  end
  return true
end

--------------------------------------------------------------- response

function HTTPClient:has_response()
  local r = self.response
  return r ~= nil and r.code ~= nil
end

function HTTPClient:get_response_code()
  local r = self.response
  return r and r.code or 0
end

function HTTPClient:get_response_headers()
  local r = self.response
  local copy = {}
  for i, h in ipairs(r and r.headers or {}) do copy[i] = h end
  return setmetatable(copy, HeaderList)
end

-- Names as the server sent them; lookups ignore case; a repeated header's
-- values are joined with ", " (get_response_headers() keeps each line).
function HTTPClient:get_response_headers_as_dictionary()
  local r = self.response
  local d = header_dict()
  if r and r.dict then
    for k, v in pairs(r.dict) do d[k] = v end
  end
  return d
end

function HTTPClient:is_response_chunked()
  local r = self.response
  return r ~= nil and r.chunked == true
end

function HTTPClient:get_response_body_length()
  local r = self.response
  return r and r.length or -1
end

-- Takes up to `max` bytes of body from inbuf / the stream (raw, before
-- chunk decoding).  Returns the string (maybe ""), or nil at the end of the
-- stream.
function HTTPClient:_take(max)
  local buf = self.inbuf
  local avail = #buf.data - buf.pos + 1
  if avail == 0 then
    local n, msg, code = self:_fill(math.max(max, 1))
    if n == nil then return nil, msg, code end
    avail = #buf.data - buf.pos + 1
    if avail == 0 then return "" end
  end
  local take = math.min(avail, max)
  local s = buf.data:sub(buf.pos, buf.pos + take - 1)
  buf.pos = buf.pos + take
  return s
end

-- The next line of a chunked body (nil if not all in yet).
function HTTPClient:_chunk_line()
  local buf = self.inbuf
  while true do
    local s, e = buf.data:find("\r?\n", buf.pos)
    if s then
      local line = buf.data:sub(buf.pos, s - 1)
      buf.pos = e + 1
      return line
    end
    if #buf.data - buf.pos + 1 > MAX_CHUNK_LINE then
      return nil, "a chunk-size line is longer than " .. MAX_CHUNK_LINE .. " bytes"
    end
    local n, msg, code = self:_fill()
    if n == nil then return nil, msg or "the server closed the connection in a chunked body", code end
    if n == 0 then return nil end
  end
end

-- The next line of a chunked body: line; nil (not all in yet); or nil,
-- true after failing the client.
function HTTPClient:_next_line()
  local line, err, code = self:_chunk_line()
  if line then return line end
  if err then
    self:_fail(S.STATUS_CONNECTION_ERROR, err, code or "ERR_INVALID_DATA")
    return nil, true
  end
  return nil
end

function HTTPClient:_read_chunked(max)
  local r, out, got = self.response, {}, 0
  while got < max and not r.done do
    if r.chunk_state == "size" then
      local line, failed = self:_next_line()
      if failed then return nil end
      if not line then break end
      -- Hex digits, then nothing or a chunk extension (";name=value").
      local hex = line:match("^%s*(%x+)%s*;") or line:match("^%s*(%x+)%s*$")
      if not hex or #hex > 15 then
        self:_fail(S.STATUS_CONNECTION_ERROR, ("invalid chunk size %q"):format(line:sub(1, 40)),
          "ERR_INVALID_DATA")
        return nil
      end
      r.chunk_left = tonumber(hex, 16)
      r.chunk_state = r.chunk_left == 0 and "trailer" or "data"
    elseif r.chunk_state == "data" then
      local s, msg, code = self:_take(math.min(r.chunk_left, max - got))
      if s == nil then
        self:_fail(S.STATUS_CONNECTION_ERROR, msg or "the server closed the connection in the middle of a chunk",
          code or "ERR_CONNECTION_ERROR")
        return nil
      end
      if s == "" then break end
      out[#out + 1] = s
      got = got + #s
      r.chunk_left = r.chunk_left - #s
      if r.chunk_left == 0 then r.chunk_state = "crlf" end
    elseif r.chunk_state == "crlf" then
      local line, failed = self:_next_line()
      if failed then return nil end
      if not line then break end
      if line ~= "" then
        self:_fail(S.STATUS_CONNECTION_ERROR, "chunk data longer than its size", "ERR_INVALID_DATA")
        return nil
      end
      r.chunk_state = "size"
    elseif r.chunk_state == "trailer" then
      local line, failed = self:_next_line()
      if failed then return nil end
      if not line then break end
      if line == "" then
        self:_body_done()
      else
        local name, value = line:match("^([^:%s][^:]*):%s*(.-)%s*$")
        if name and #r.headers < MAX_HEADERS then
          r.headers[#r.headers + 1] = name .. ": " .. value
          local old = r.dict[name]
          r.dict[name] = old and (old .. ", " .. value) or value
        end
      end
    end
  end
  return table.concat(out)
end

function HTTPClient:_read_body(max)
  local r = self.response
  if r.chunked then return self:_read_chunked(max) end
  if r.until_close then
    local s, msg, code = self:_take(max)
    if s == nil then
      if msg then
        self:_fail(S.STATUS_CONNECTION_ERROR, msg, code)
        return nil
      end
      self:_body_done()
      return ""
    end
    return s
  end
  local s, msg, code = self:_take(math.min(r.left, max))
  if s == nil then
    self:_fail(S.STATUS_CONNECTION_ERROR, msg or ("the server closed the connection after %d of %d body bytes")
      :format(r.length - r.left, r.length), code or "ERR_FILE_EOF")
    return nil
  end
  r.left = r.left - #s
  if r.left == 0 then self:_body_done() end
  return s
end

-- client:read_response_body_chunk() -> up to the read chunk size of body
-- bytes ("" when none have arrived yet; in blocking mode it waits for some).
function HTTPClient:read_response_body_chunk()
  if self.status ~= S.STATUS_BODY then return "" end
  local parts, got = {}, 0
  local deadline = self.blocking and (now() + self.timeout)
  while self.status == S.STATUS_BODY and got < self.chunk_size do
    local s = self:_read_body(self.chunk_size - got)
    if s == nil then break end
    if #s > 0 then
      parts[#parts + 1] = s
      got = got + #s
    elseif self.status == S.STATUS_BODY then
      if not deadline or got > 0 then break end
      local left = deadline - now()
      if left <= 0 then
        self:_fail(S.STATUS_CONNECTION_ERROR, ("timed out after %g s waiting for the body")
          :format(self.timeout), "ERR_TIMEOUT")
        break
      end
      wait_sockets({ self.peer }, {}, math.min(left, 0.25))
    end
  end
  return table.concat(parts)
end

-- client:query_string_from_dict{ a = 1, b = {"x", "y"}, c = true }
--   -> "a=1&b=x&b=y&c" (keys sorted, values percent-encoded)
function HTTPClient:query_string_from_dict(fields)
  if type(fields) ~= "table" then argerror(1, "query_string_from_dict", "table expected") end
  local keys = {}
  for k in pairs(fields) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = fields[k]
    if v == nil then v = fields[tonumber(k)] end
    local ek = urlencode(k)
    if v == true then
      out[#out + 1] = ek
    elseif type(v) == "table" then
      for _, item in ipairs(v) do out[#out + 1] = ek .. "=" .. urlencode(item) end
    elseif v ~= false then
      out[#out + 1] = ek .. "=" .. urlencode(v)
    end
  end
  return table.concat(out, "&")
end

----------------------------------------------------------- tls.request

local REDIRECTS = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
local METHOD_IDS = {}
for id, name in pairs(METHODS) do METHOD_IDS[name] = id end

-- "https://host:port/path?q" -> scheme, host, port, path; or nil, message
-- (not http or https, or a bad host or port).
local function parse_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  scheme = scheme and scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "http:// or https:// expected"
  end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  authority = authority:gsub("^.*@", "")          -- no credentials in URLs
  local host, port = parse_authority(authority)
  if not host then return nil, port end
  port = port or (scheme == "https" and 443 or 80)
  path = path:gsub("#.*$", "")
  if path == "" then path = "/" elseif path:sub(1, 1) == "?" then path = "/" .. path end
  if bad_target(path) then
    return nil, "a space or control character in the path (percent-encode it)"
  end
  return scheme, host, port, path
end

-- The headers that a request redirected from URL `from` to URL `to`
-- carries: a caller's credentials are for the origin (scheme, host, port)
-- they were given for, so a redirect to another origin drops
-- Authorization, Cookie and Proxy-Authorization, as curl does (and
-- https -> http goes on without them); a Host the caller set is for that
-- origin too (the new one gets its own).  `headers` is a list of
-- "Name: value" lines; returns it, or a copy without those.  Every
-- redirect of tls.request (and of HTTPRequest) goes through here.
local CREDENTIALS = { authorization = true, cookie = true, ["proxy-authorization"] = true,
                      host = true }

local function redirect_headers(headers, from, to)
  local s1, h1, p1 = parse_url(from)
  local s2, h2, p2 = parse_url(to)
  if s1 and s1 == s2 and h1:lower() == h2:lower() and p1 == p2 then return headers end
  local kept = {}
  for _, h in ipairs(headers) do
    if not CREDENTIALS[h:match("^[^:]*"):lower()] then kept[#kept + 1] = h end
  end
  return kept
end

-- Resolves a Location header against the URL it came from.
local function resolve_location(base, location)
  if location:match("^%a[%w+.-]*://") then return location end
  local scheme, host, port, path = parse_url(base)
  local h = host:find(":") and ("[" .. host .. "]") or host
  local origin = scheme .. "://" .. h .. ":" .. port
  if location:sub(1, 2) == "//" then return scheme .. ":" .. location end
  if location:sub(1, 1) == "/" then return origin .. location end
  local dir = path:gsub("%?.*$", ""):match("^(.*/)") or "/"
  return origin .. dir .. location
end

-- opts.output / opts.sink (their kinds checked) -> sink function, or nil
-- and the path to write.
local function open_sink(opts)
  local output = opts.output
  if output == nil then return opts.sink end
  if type(output) == "string" then return nil, output end
  return function(chunk) assert(output:write(chunk)) end
end

-- What tls.request takes (see tlspeer.options); anything else raises.
local REQUEST_OPTIONS = {
  method = "string or number", headers = "table", body = "string",
  tls_options = "TLSOptions", timeout = "number", max_redirects = "number",
  output = "path or open file", sink = "function", chunk_size = "number",
  keep_error_body = "boolean",
}

-- tls.request(url, opts) -> body, code, headers | nil, message, code
-- With output or sink, a status other than 2xx gives nil, message, status,
-- headers unless opts.keep_error_body.
function HTTPClient.request_url(url, opts)
  if type(url) ~= "string" then argerror(1, "request", "URL string expected") end
  if opts == nil then opts = {} end
  check_options(opts, REQUEST_OPTIONS, "request", 2)
  local method = opts.method or "GET"
  if type(method) == "string" then method = METHOD_IDS[method:upper()] end
  if not METHODS[method] then
    error("bad option 'method' to 'request' (\"GET\", \"POST\"... or a METHOD_* value expected)", 2)
  end
  method = METHOD_IDS[METHODS[method]]        -- 2.0 -> 2
  local headers = normalise_headers(opts.headers, "request")
  local body = opts.body or ""
  local timeout = opts.timeout or 30
  if timeout <= 0 then
    error("bad option 'timeout' to 'request' (positive number of seconds expected)", 2)
  end
  local max_redirects = opts.max_redirects or 8
  if max_redirects < 0 or max_redirects % 1 ~= 0 then
    error("bad option 'max_redirects' to 'request' (non-negative integer expected)", 2)
  end
  local chunk_size = opts.chunk_size or 65536
  if chunk_size % 1 ~= 0 or chunk_size < 256 or chunk_size > 16 * 1024 * 1024 then
    error("bad option 'chunk_size' to 'request' (integer from 256 to 16777216 expected)", 2)
  end
  chunk_size = math.floor(chunk_size)
  local sink, path = open_sink(opts)
  local deadline = now() + timeout
  local redirects = 0

  while true do
    local scheme, host, port, target = parse_url(url)
    if not scheme then
      -- Only the caller's URL gets here: a redirect's is checked below.
      return nil, ("invalid URL '%s' (%s)"):format(printable(url), host), "ERR_INVALID_PARAMETER"
    end
    local client = HTTPClient.new()
    client:set_blocking_mode(true)
    client:set_read_chunk_size(chunk_size)
    local function left() return math.max(deadline - now(), 0.001) end
    client:set_timeout(left())
    local tls_options = scheme == "https" and opts.tls_options or nil
    if opts.tls_options and scheme == "https" and opts.tls_options:is_server() then
      return nil, "tls_options must be client TLSOptions", "ERR_INVALID_PARAMETER"
    end
    local ok, msg, code = client:connect_to_host((scheme == "https" and "https://" or "http://")
      .. (host:find(":") and ("[" .. host .. "]") or host), port, tls_options)
    if not ok then return nil, msg, code end
    if client:get_status() ~= S.STATUS_CONNECTED then
      msg, code = client:get_error()
      return nil, msg or ("cannot connect to " .. host), code or "ERR_CANT_CONNECT"
    end
    client:set_timeout(left())
    ok, msg, code = client:request(method, target, headers, body)
    if not ok then return nil, msg, code end
    if not client:has_response() then
      msg, code = client:get_error()
      client:close()
      return nil, msg or "no response", code or "ERR_CONNECTION_ERROR"
    end
    local status = client:get_response_code()
    local dict = client:get_response_headers_as_dictionary()
    local location = dict["Location"]
    if REDIRECTS[status] and location and max_redirects > 0 then
      if redirects == max_redirects then
        client:close()
        return nil, ("more than %d redirects (the last to %s)"):format(max_redirects, location),
          "ERR_UNAVAILABLE"
      end
      redirects = redirects + 1
      client:close()              -- a fresh connection follows the redirect
      -- The Location is the server's: a URL parse_url or request() would
      -- refuse (a bad host, a space or line break) is the server's fault,
      -- not an argument error.
      local next_url = resolve_location(url, location)
      local next_scheme, why = parse_url(next_url)
      if not next_scheme then
        return nil, ("the server redirected to an invalid URL '%s' (%s)")
          :format(printable(location), why), "ERR_INVALID_DATA"
      end
      headers = redirect_headers(headers, url, next_url)
      url = next_url
      if status == 303 or ((status == 301 or status == 302) and METHODS[method] == "POST") then
        method, body = METHOD_IDS.GET, ""
        local kept = {}
        for _, h in ipairs(headers) do
          local n = h:match("^([^:]+)"):lower()
          if n ~= "content-length" and n ~= "content-type" then kept[#kept + 1] = h end
        end
        headers = kept
      end
    elseif (sink or path) and (status < 200 or status > 299) and not opts.keep_error_body then
      -- A download that got an error page: the page is not the file asked
      -- for, so it goes nowhere (keep_error_body = true writes it).
      client:close()
      local where = path and ("'" .. printable(path) .. "'")
        or (opts.output and "the output file" or "the sink")
      return nil, ("HTTP %d from %s: the body was not written to %s "
        .. "(keep_error_body = true writes it)"):format(status, printable(url), where), status, dict
    else
      -- The body: in memory, or streamed to the sink / a file.
      local parts, total, file, tmp = {}, 0, nil, nil
      if path then
        tmp = path .. ".part"
        file, msg = io.open(tmp, "wb")
        if not file then
          client:close()
          return nil, ("cannot write '%s': %s"):format(tmp, msg), "ERR_FILE_CANT_WRITE"
        end
      end
      while client:get_status() == S.STATUS_BODY do
        client:set_timeout(left())
        local chunk = client:read_response_body_chunk()
        if #chunk > 0 then
          total = total + #chunk
          if file then
            local w, werr = file:write(chunk)
            if not w then
              file:close(); os.remove(tmp); client:close()
              return nil, ("cannot write '%s': %s"):format(tmp, werr), "ERR_FILE_CANT_WRITE"
            end
          elseif sink then
            local sok, serr = pcall(sink, chunk)
            if not sok then
              client:close()
              return nil, "the sink raised an error: " .. tostring(serr), "FAILED"
            end
          else
            parts[#parts + 1] = chunk
          end
        end
      end
      local st = client:get_status()
      if st ~= S.STATUS_CONNECTED and st ~= S.STATUS_DISCONNECTED then
        msg, code = client:get_error()
        if file then file:close(); os.remove(tmp) end
        return nil, msg or "the response body did not arrive whole", code or "ERR_CONNECTION_ERROR"
      end
      dict = client:get_response_headers_as_dictionary()   -- with any trailers
      client:close()
      if file then
        file:close()
        local rok, rerr = os.rename(tmp, path)
        if not rok then
          os.remove(tmp)
          return nil, ("cannot write '%s': %s"):format(path, rerr), "ERR_FILE_CANT_WRITE"
        end
      end
      if sink or path then return total, status, dict end
      return table.concat(parts), status, dict
    end
  end
end

HTTPClient.parse_url = parse_url
HTTPClient._redirect_headers = redirect_headers     -- for HTTPRequest

return HTTPClient
