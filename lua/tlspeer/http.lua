-- HTTPClient (Godot 4 semantics): HTTP/1.1 in Lua, on top of the
-- StreamPeer methods of StreamPeerTCP / StreamPeerTLS.  tls.request
-- (request.lua) and HTTPRequest (httprequest.lua) are built on it.
--
-- HTTPClient is poll-driven: connect_to_host(), then poll() until
-- STATUS_CONNECTED; request(), then poll() until the response headers are in
-- (STATUS_BODY, or STATUS_CONNECTED when there is no body); then
-- read_response_body_chunk() until the status leaves STATUS_BODY.  With
-- set_blocking_mode(true) each of those waits (in poll(2)) instead.
-- Proxies as Godot's: set_http_proxy() for http:// (requests in absolute
-- form), set_https_proxy() for TLS (a CONNECT tunnel, TLS inside it end to
-- end with the origin).  The body is passed on as it came: content codings
-- are decoded by tls.request and HTTPRequest, not here (as in Godot).
local core = require "tlspeer.core"
local U = require "tlspeer.httputil"

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

local METHODS = U.METHODS
local S = HTTPClient     -- status names, shorter

local STATUS_NAMES = {}
for k, v in pairs(HTTPClient) do
  if k:match("^STATUS_") then STATUS_NAMES[v] = k:sub(8):lower():gsub("_", " ") end
end

----------------------------------------------------------------- helpers

local function argerror(n, fname, msg)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 3)
end
local header_dict, bad_target, body_length = U.header_dict, U.bad_target, U.body_length
local urlencode, parse_authority, bracket = U.urlencode, U.parse_authority, U.bracket

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
  if host and self.proxy then
    where = where .. (" via the proxy %s:%d"):format(bracket(self.proxy.host), self.proxy.port)
  end
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

----------------------------------------------------------------- proxies

local function set_proxy(self, field, fname, host, port)
  if type(host) ~= "string" then argerror(1, fname, "host name expected (\"\" unsets the proxy)") end
  if not is_integer(port) or port < -1 or port == 0 or port > 65535 then
    argerror(2, fname, "port 1..65535 expected (-1 unsets the proxy)")
  end
  if host == "" or port == -1 then
    self[field] = nil
    return true
  end
  local proxy, msg = U.proxy_of_host(host, port)
  if not proxy then return nil, msg, "ERR_INVALID_PARAMETER" end
  self[field] = proxy
  return true
end
HTTPClient._set_proxy_checked = set_proxy       -- HTTPRequest's setters share it

-- client:set_http_proxy(host, port): the proxy for plain http://
-- connections (the requests go to it in absolute form); "" or -1 unsets
-- it.  It applies from the next connect_to_host().  Ours: "user:pass@host"
-- sends Basic credentials to the proxy (only to it).
function HTTPClient:set_http_proxy(host, port)
  return set_proxy(self, "http_proxy", "set_http_proxy", host, port)
end

-- client:set_https_proxy(host, port): the proxy for TLS connections: a
-- CONNECT tunnel through it, TLS inside end to end with the server (the
-- proxy sees only the host and port).  Same rules as set_http_proxy.
function HTTPClient:set_https_proxy(host, port)
  return set_proxy(self, "https_proxy", "set_https_proxy", host, port)
end

-- For tls.request and HTTPRequest: a proxy parsed already (httputil), or
-- nil, for "http" or "https" connections.
function HTTPClient:_set_proxy(kind, proxy)
  self[kind == "https" and "https_proxy" or "http_proxy"] = proxy or nil
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
  -- The proxy of this connection (Godot reads its settings here too).
  self.proxy = (use_tls and self.https_proxy) or (not use_tls and self.http_proxy) or nil
  self.tunnel = self.proxy and use_tls and "start" or nil
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
  self.inbuf, self.outbuf, self.out_from = nil, nil, 1
  self.response = nil
end

-- Starts the connect: a name is looked up on a worker meanwhile
-- (STATUS_RESOLVING for real), an IP address connects at once.
function HTTPClient:_start_connect()
  local tcp = StreamPeerTCP.new()
  local proxy = self.proxy
  local ok, msg, code = tcp:connect_to_host(proxy and proxy.host or self.host,
    proxy and proxy.port or self.port)
  if not ok then
    if proxy then msg = "the proxy: " .. tostring(msg) end
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
    local proxy = self.proxy
    if proxy then
      msg = ("the proxy %s:%d: %s"):format(bracket(proxy.host), proxy.port,
        msg or "cannot connect")
    end
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
  if self.tunnel and not self:_advance_tunnel() then return end
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

-- The CONNECT tunnel through an https proxy, on the TCP stream before TLS
-- starts: sends the CONNECT (with the proxy's credentials, if any), reads
-- the proxy's answer.  Returns true once the tunnel is open; false to wait
-- (or after failing the client: STATUS_CANT_CONNECT, with a message that
-- says what the proxy answered).
function HTTPClient:_advance_tunnel()
  local tcp, proxy = self.tcp, self.proxy
  local where = ("the proxy %s:%d"):format(bracket(proxy.host), proxy.port)
  local target = bracket(self.host) .. ":" .. self.port
  if self.tunnel == "start" then
    local lines = { "CONNECT " .. target .. " HTTP/1.1", "Host: " .. target,
                    "User-Agent: " .. USER_AGENT }
    if proxy.auth then lines[#lines + 1] = "Proxy-Authorization: " .. proxy.auth end
    lines[#lines + 1] = "\r\n"
    self.tunnel_out, self.tunnel_in = table.concat(lines, "\r\n"), ""
    self.tunnel = "send"
  end
  if self.tunnel == "send" then
    local n, msg, code = tcp:put_partial_data(self.tunnel_out)
    if not n then
      self:_fail(S.STATUS_CANT_CONNECT, ("%s: %s"):format(where, tostring(msg)), code or "ERR_CANT_CONNECT")
      return false
    end
    self.tunnel_out = self.tunnel_out:sub(n + 1)
    if self.tunnel_out ~= "" then return false end
    self.tunnel = "read"
  end
  while true do
    local data, msg, code = tcp:get_partial_data(4096)
    if not data then
      self:_fail(S.STATUS_CANT_CONNECT, ("%s closed the connection before answering the CONNECT to %s%s")
        :format(where, target, msg and code ~= "ERR_FILE_EOF" and (" (" .. msg .. ")") or ""),
        "ERR_CANT_CONNECT")
      return false
    end
    if data == "" then return false end
    self.tunnel_in = self.tunnel_in .. data
    local s, e = self.tunnel_in:find("\r?\n\r?\n")
    if not s then
      if #self.tunnel_in > MAX_HEADER_BYTES then
        self:_fail(S.STATUS_CANT_CONNECT, where .. " sent an answer to the CONNECT larger than "
          .. MAX_HEADER_BYTES .. " bytes", "ERR_INVALID_DATA")
        return false
      end
    else
      local head, rest = self.tunnel_in:sub(1, s - 1), self.tunnel_in:sub(e + 1)
      self.tunnel_in = nil
      local status_line = head:match("^[^\r\n]*")
      local code_s, reason = status_line:match("^HTTP/1%.[01] (%d%d%d) ?(.*)$")
      local status = tonumber(code_s)
      self.proxy_status = status
      if not status then
        self:_fail(S.STATUS_CANT_CONNECT, ("%s answered the CONNECT with a malformed status line %q")
          :format(where, status_line:sub(1, 80)), "ERR_INVALID_DATA")
        return false
      end
      if status < 200 or status > 299 then
        local why = ("%s refused the tunnel to %s: %d %s"):format(where, target, status,
          U.printable(reason))
        local err = "ERR_CANT_CONNECT"
        if status == 407 or status == 401 then
          why = why .. (proxy.auth and " (it refused the credentials given)"
            or " (it wants credentials: give them as user:pass@ in the proxy)")
          err = "ERR_UNAUTHORIZED"
        elseif status == 403 then
          err = "ERR_UNAUTHORIZED"
        end
        self:_fail(S.STATUS_CANT_CONNECT, why, err)
        return false
      end
      if rest ~= "" then
        -- Nothing may come before the server's TLS records, which come
        -- only after our ClientHello.
        self:_fail(S.STATUS_CANT_CONNECT, where .. " sent data after its answer to the CONNECT",
          "ERR_INVALID_DATA")
        return false
      end
      self.tunnel = nil
      return true
    end
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

-- Sends what the request has queued, at most `limit` bytes (nil: as much
-- as the socket takes; HTTPRequest sets _io_budget so that a step stays
-- within the event core's budget).  A large body is sent in pieces of at
-- most 64 KiB from an offset: never a copy of the rest.
function HTTPClient:_flush(limit)
  local out = self.outbuf
  limit = limit or self._io_budget or math.huge
  local sent = 0
  while out and out[1] and sent < limit do
    local s, from = out[1], self.out_from or 1
    local want = math.min(#s - from + 1, limit - sent, 65536)
    local piece = (from == 1 and want == #s) and s or s:sub(from, from + want - 1)
    local n, msg, code = self.peer:put_partial_data(piece)
    if not n then return nil, msg, code end
    if n == 0 then return true end
    sent = sent + n
    from = from + n
    if from > #s then
      table.remove(out, 1)
      from = 1
    end
    self.out_from = from
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

local normalise_headers = U.normalise_headers   -- raises at its caller's caller
local has_header = U.has_header

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
  local default = self.use_tls and 443 or 80
  local authority = bracket(self.host) .. (self.port ~= default and (":" .. self.port) or "")
  -- Proxy-Authorization is for a proxy, never for the server: it goes out
  -- only in a request to an http proxy (absolute form), where the caller's
  -- wins over the one from set_http_proxy("user:pass@...").  Through a
  -- CONNECT tunnel the server is at the other end: it gets none.
  local to_proxy = self.proxy and not self.use_tls
  if not to_proxy then
    list = U.without(list, { ["proxy-authorization"] = true })
  elseif self.proxy.auth and not has_header(list, "Proxy-Authorization") then
    list[#list + 1] = "Proxy-Authorization: " .. self.proxy.auth
  end
  local target = url
  if to_proxy and url:sub(1, 1) == "/" then target = "http://" .. authority .. url end
  local lines = { name .. " " .. target .. " HTTP/1.1" }
  if not has_header(list, "Host") then
    lines[#lines + 1] = "Host: " .. authority
  end
  if not has_header(list, "User-Agent") then lines[#lines + 1] = "User-Agent: " .. USER_AGENT end
  if not has_header(list, "Accept") then lines[#lines + 1] = "Accept: */*" end
  if not has_header(list, "Content-Length") and not has_header(list, "Transfer-Encoding")
      and (#body > 0 or name == "POST" or name == "PUT" or name == "PATCH") then
    lines[#lines + 1] = "Content-Length: " .. #body
  end
  for _, h in ipairs(list) do lines[#lines + 1] = h end
  lines[#lines + 1] = "\r\n"
  self.outbuf, self.out_from = { table.concat(lines, "\r\n") }, 1
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
  return setmetatable(copy, U.HeaderList)
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

-- Kept on the class for scripts that used them: HTTPClient.parse_url(url)
-- -> scheme, host, port, path; the origin rule of redirects.
HTTPClient.parse_url = U.parse_url
HTTPClient._redirect_headers = U.redirect_headers

return HTTPClient
