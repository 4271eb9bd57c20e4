-- HTTPRequest (Godot 4's, as a poll-driven object): a whole HTTP request
-- -- connection, TLS, redirects, gzip/deflate, proxies, a body in memory or
-- streamed to a file -- advanced a short step at a time by req:poll() or
-- tls.poll(), never holding a frame.  The protocol is HTTPClient's
-- (http.lua); URLs, redirects, proxies and content codings come from
-- httputil.lua, as for tls.request.
--
-- It is an owner of the event core (loop.lua) through a small driver
-- object: the driver is what the loop knows (sockets' token, timers, the
-- queue of ready work).  While a request runs and something listens for
-- its events, the driver keeps the HTTPRequest alive, as Godot keeps a
-- node in the tree (so `HTTPRequest.new()` in a local, a listener and
-- request() is enough: the result still comes); otherwise it holds it
-- weakly, and a request nobody references or listens to is collected: its
-- sockets close with it and its partial download file is removed.  Each
-- step reads at most
-- loop.budget_bytes, inflates at most a few times that, writes one piece
-- to the file, and says whether it has more to do at once.
local core = require "tlspeer.core"
local U = require "tlspeer.httputil"
local HTTPClient = require "tlspeer.http"
local loop = require "tlspeer.loop"
local helpers = require "tlspeer.helpers"

local now, is_integer = core._now, core._is_integer
local TLSOptions = core.TLSOptions
local S = HTTPClient

-- Decoded bytes one step may produce, per budget byte read: a stream that
-- inflates more (a decompression bomb) goes on in the next steps.
local INFLATE_FACTOR = 4

local HTTPRequest = setmetatable({
  RESULT_SUCCESS = 0, RESULT_CHUNKED_BODY_SIZE_MISMATCH = 1, RESULT_CANT_CONNECT = 2,
  RESULT_CANT_RESOLVE = 3, RESULT_CONNECTION_ERROR = 4, RESULT_TLS_HANDSHAKE_ERROR = 5,
  RESULT_NO_RESPONSE = 6, RESULT_BODY_SIZE_LIMIT_EXCEEDED = 7,
  RESULT_BODY_DECOMPRESS_FAILED = 8, RESULT_REQUEST_FAILED = 9,
  RESULT_DOWNLOAD_FILE_CANT_OPEN = 10, RESULT_DOWNLOAD_FILE_WRITE_ERROR = 11,
  RESULT_REDIRECT_LIMIT_REACHED = 12, RESULT_TIMEOUT = 13,
}, { __index = helpers._Emitter })
HTTPRequest.__index = HTTPRequest

local R = HTTPRequest

local RESULT_NAMES = {}
for k, v in pairs(HTTPRequest) do
  if type(k) == "string" and k:match("^RESULT_") then RESULT_NAMES[v] = k end
end

local function argerror(n, fname, msg)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 3)
end

------------------------------------------------------------- the driver

-- What the event core holds: it steps the HTTPRequest while it lives.
local WEAK = { __mode = "v" }
local Driver = {}
Driver.__index = Driver

local function new_driver(req)
  local d = loop.owner(setmetatable({ _ref = setmetatable({ req }, WEAK) }, Driver))
  d._owner = d                       -- the driver is its sockets' token
  return d
end

function Driver:_step()
  local req = self._ref[1]
  if not req then return false end
  return req:_step()
end

function Driver:_timeout(id)
  local req = self._ref[1]
  if req then req:_on_timeout(id) end
end

function Driver:_report(event, err)
  local req = self._ref[1]
  if req then return req:_report(event, err) end
  io.stderr:write(("tlspeer: HTTPRequest '%s': %s\n"):format(event, tostring(err)))
end

-- The driver keeps the request alive while it runs with listeners.
function HTTPRequest:_hold()
  local ev = self._events
  local heard = #ev.request_completed > 0 or #ev.progress > 0
  self._driver._keep = (self.job and heard) and self or nil
end

-- req:on(event, fn): "request_completed", "progress" or "error".
function HTTPRequest:on(event, fn)
  if type(event) ~= "string" or not self._events[event] then
    error(("bad argument #1 to 'on' (%s)"):format(type(event) == "string"
      and ("unknown event '" .. event .. "'") or "event name expected"), 2)
  end
  if type(fn) ~= "function" then error("bad argument #2 to 'on' (function expected)", 2) end
  local list = self._events[event]
  list[#list + 1] = fn
  self:_hold()
  return self
end

-- An object whose finalizer runs fn (5.1 and LuaJIT: newproxy; tables get
-- __gc from 5.2 on).
local newproxy = rawget(_G, "newproxy")
local function gc_guard(fn)
  if newproxy then
    local p = newproxy(true)
    getmetatable(p).__gc = fn
    return p
  end
  return setmetatable({}, { __gc = fn })
end

------------------------------------------------------------------ objects

function HTTPRequest.new()
  local dl = {}                      -- the download file, for the finalizer
  local self = setmetatable({
    accept_gzip = true,
    body_size_limit = -1,
    download_chunk_size = 65536,
    download_file = "",
    max_redirects = 8,
    timeout = 0,
    body_len = -1,
    downloaded = 0,
    _dl = dl,
    _events = helpers._events { "request_completed", "progress", "error" },
  }, HTTPRequest)
  self._driver = new_driver(self)
  -- Collected in the middle of a download: the partial file goes too.
  self._guard = gc_guard(function()
    if dl.file then pcall(dl.file.close, dl.file) end
    if dl.tmp then os.remove(dl.tmp) end
    dl.file, dl.tmp = nil, nil
  end)
  return self
end

function HTTPRequest:__tostring()
  local job = self.job
  if not job then
    return ("HTTPRequest (idle%s)"):format(self.last_result
      and (", last: " .. RESULT_NAMES[self.last_result]) or "")
  end
  return ("HTTPRequest (%s %s, %s)"):format(U.METHODS[job.method], U.printable(job.url),
    job.phase == "body" and ("%d bytes"):format(self.downloaded) or job.phase)
end

HTTPRequest.__close = function(self) self:cancel_request() end

------------------------------------------------------------- properties

-- Godot's properties, as setter/getter pairs with its defaults.  They
-- apply from the next request().

function HTTPRequest:set_accept_gzip(enabled)
  if type(enabled) ~= "boolean" then argerror(1, "set_accept_gzip", "boolean expected") end
  self.accept_gzip = enabled
end

function HTTPRequest:is_accepting_gzip()
  return self.accept_gzip
end

function HTTPRequest:set_body_size_limit(bytes)
  if not is_integer(bytes) or bytes < -1 then
    argerror(1, "set_body_size_limit", "byte count, or -1 for no limit, expected")
  end
  self.body_size_limit = bytes
end

function HTTPRequest:get_body_size_limit()
  return self.body_size_limit
end

function HTTPRequest:set_download_chunk_size(bytes)
  if not is_integer(bytes) or bytes < 256 or bytes > 16 * 1024 * 1024 then
    argerror(1, "set_download_chunk_size", "integer from 256 to 16777216 expected")
  end
  self.download_chunk_size = bytes
end

function HTTPRequest:get_download_chunk_size()
  return self.download_chunk_size
end

function HTTPRequest:set_download_file(path)
  if type(path) ~= "string" then argerror(1, "set_download_file", "path string expected (\"\": none)") end
  self.download_file = path
end

function HTTPRequest:get_download_file()
  return self.download_file
end

function HTTPRequest:set_max_redirects(n)
  if not is_integer(n) or n < -1 then
    argerror(1, "set_max_redirects", "integer >= 0 expected (-1: no limit)")
  end
  self.max_redirects = n
end

function HTTPRequest:get_max_redirects()
  return self.max_redirects
end

-- Seconds for the whole request, redirects included (0: none).
function HTTPRequest:set_timeout(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds or seconds < 0 then
    argerror(1, "set_timeout", "seconds >= 0 expected (0: no timeout)")
  end
  self.timeout = seconds
end

function HTTPRequest:get_timeout()
  return self.timeout
end

local tls_options_mt
function HTTPRequest:set_tls_options(options)
  tls_options_mt = tls_options_mt or getmetatable(TLSOptions.client_unsafe())
  if options ~= nil and getmetatable(options) ~= tls_options_mt then
    argerror(1, "set_tls_options", "TLSOptions expected (nil: the default)")
  end
  if options ~= nil and options:is_server() then
    argerror(1, "set_tls_options", "client TLSOptions expected, not server ones")
  end
  self.tls_options = options
end

-- Proxies as HTTPClient's: host "" or port -1 unsets; "user:pass@host"
-- (ours) authenticates to the proxy.
function HTTPRequest:set_http_proxy(host, port)
  return HTTPClient._set_proxy_checked(self, "http_proxy", "set_http_proxy", host, port)
end

function HTTPRequest:set_https_proxy(host, port)
  return HTTPClient._set_proxy_checked(self, "https_proxy", "set_https_proxy", host, port)
end

----------------------------------------------------------------- state

function HTTPRequest:get_http_client_status()
  local job = self.job
  return job and job.client:get_status() or S.STATUS_DISCONNECTED
end

-- The body's size as the response says it (Content-Length), -1 when it
-- does not say.
function HTTPRequest:get_body_size()
  return self.body_len
end

-- Bytes of the body received so far (as sent: compressed ones count as
-- they came).
function HTTPRequest:get_downloaded_bytes()
  return self.downloaded
end

-- Ours: why the last request failed (message, code), or nothing.
function HTTPRequest:get_error()
  if self.err then return self.err[1], self.err[2] end
end

--------------------------------------------------------------- requests

local job_ids = 0

-- request(url, custom_headers = {}, method = METHOD_GET, request_data = "")
-- -> true, or nil, message, code ("ERR_BUSY" while one is in flight,
-- "ERR_INVALID_PARAMETER" for a URL that is not http(s) with a valid
-- host).  The outcome comes as request_completed from a later poll.
function HTTPRequest:_start(fname, url, custom_headers, method, data)
  if type(url) ~= "string" then argerror(1, fname, "URL string expected") end
  local headers = U.normalise_headers(custom_headers, fname, 2, 3)
  if method == nil then method = S.METHOD_GET end
  if not is_integer(method) or not U.METHODS[method] then
    argerror(3, fname, "METHOD_* value expected")
  end
  if data == nil then data = "" end
  if type(data) ~= "string" then argerror(4, fname, "string expected") end
  if self.job then
    return nil, "HTTPRequest is processing a request: wait for request_completed or call "
      .. "cancel_request() first", "ERR_BUSY"
  end
  local scheme, why = U.parse_url(url)
  if not scheme then
    return nil, ("invalid URL '%s' (%s)"):format(U.printable(url), why), "ERR_INVALID_PARAMETER"
  end
  -- Content codings: asked for and decoded, unless the caller asked for
  -- codings of its own (then the body comes as the server sent it).
  local decode = self.accept_gzip and not U.has_header(headers, "Accept-Encoding")
  if decode then headers[#headers + 1] = "Accept-Encoding: gzip, deflate" end
  job_ids = job_ids + 1
  local job = {
    id = job_ids, url = url, method = method, headers = headers, body = data,
    decode = decode, redirections = 0, phase = "connect",
  }
  self.job, self.err, self.last_result = job, nil, nil
  self.body_len, self.downloaded = -1, 0
  if self.timeout > 0 then
    job.timer = loop.timer(now() + self.timeout, self._driver, job.id)
  end
  self:_connect(job)
  self:_hold()
  self._driver:_queue(self._driver)         -- the first step, at the next poll
  return true
end

function HTTPRequest:request(url, custom_headers, method, request_data)
  local ok, msg, code = self:_start("request", url, custom_headers, method, request_data)
  return ok, msg, code
end

-- The same with the body as bytes (Godot's PackedByteArray: a Lua string).
function HTTPRequest:request_raw(url, custom_headers, method, request_data_raw)
  local ok, msg, code = self:_start("request_raw", url, custom_headers, method, request_data_raw)
  return ok, msg, code
end

-- The connection of the job's current URL (the first, or a redirect's).
function HTTPRequest:_connect(job)
  local scheme, host, port, target = U.parse_url(job.url)
  job.target = target
  local client = HTTPClient.new()
  client:_set_proxy(scheme, U.proxy_with_caller_auth(
    scheme == "https" and self.https_proxy or self.http_proxy, job.headers))
  local options
  if scheme == "https" then
    options = self.tls_options
    if not options then
      -- One default per HTTPRequest: its sessions resume the next time.
      self._default_tls = self._default_tls or TLSOptions.client()
      options = self._default_tls
    end
  end
  job.client = client
  job.phase = "connect"
  local ok, msg, code = client:connect_to_host(scheme .. "://" .. U.bracket(host), port, options)
  if not ok then job.early_failure = { msg, code } end
end

-- Keeps the event core watching the client's socket (a new one after a
-- redirect or a reconnection); wants writability while connecting or
-- sending.
function HTTPRequest:_sync_watch(job)
  local client = job.client
  local tcp = client.tcp
  if tcp ~= job.watched then
    if job.watched then loop.unwatch(job.watched) end
    if tcp then loop.watch(tcp, self._driver) end
    job.watched = tcp
  end
  if tcp then
    local st = client:get_status()
    loop.want_write(tcp, st == S.STATUS_RESOLVING or st == S.STATUS_CONNECTING
      or (client.outbuf ~= nil and client.outbuf[1] ~= nil))
  end
end

-- Everything the job holds goes: sockets out of the loop and closed, the
-- timer, the decoder, the partial file (unless `keep_file`, after its
-- rename).
function HTTPRequest:_release(job)
  self._driver._keep = nil
  if job.timer then job.timer.cancelled = true end
  if job.watched then loop.unwatch(job.watched); job.watched = nil end
  if job.client then job.client:close() end
  if job.decoder then job.decoder:close(); job.decoder = nil end
  local dl = self._dl
  if job.file then
    pcall(job.file.close, job.file)
    job.file = nil
    os.remove(job.tmp)
  end
  dl.file, dl.tmp = nil, nil
end

-- The end of a request: released, then request_completed.  The handler
-- may start the next request at once.
function HTTPRequest:_finish(result, code, headers, body, msg, err)
  local job = self.job
  if not job then return end
  self.job = nil
  self:_release(job)
  self.last_result = result
  if result ~= R.RESULT_SUCCESS then
    self.err = { msg or RESULT_NAMES[result], err or "FAILED" }
  end
  self:_emit("request_completed", result, code or 0, headers or {}, body or "")
end

-- req:cancel_request(): stops the request in flight (the connection
-- closes, a partial download file is removed); no event follows.
function HTTPRequest:cancel_request()
  local job = self.job
  if not job then return end
  self.job = nil
  self:_release(job)
end

function HTTPRequest:_on_timeout(id)
  local job = self.job
  if not job or job.id ~= id then return end
  self:_finish(R.RESULT_TIMEOUT, job.response_code, job.response_headers, "",
    ("the request to %s did not complete within %g s"):format(U.printable(job.url), self.timeout),
    "ERR_TIMEOUT")
end

------------------------------------------------------------------- steps

-- One step; returns true when it has more to do at once.
function HTTPRequest:_step()
  local job = self.job
  if not job then return false end
  if job.early_failure then
    local f = job.early_failure
    return self:_finish(R.RESULT_CANT_CONNECT, 0, {}, "", f[1], f[2])
  end
  local client = job.client
  client._io_budget = loop.budget_bytes
  if job.phase == "connect" then
    client:poll()
    local st = client:get_status()
    if st == S.STATUS_CONNECTED then
      local ok, msg, code = client:request(job.method, job.target, job.headers, job.body)
      if not ok then return self:_finish(R.RESULT_REQUEST_FAILED, 0, {}, "", msg, code) end
      job.phase = "request"
      self:_sync_watch(job)
      return true
    end
    self:_sync_watch(job)
    if st == S.STATUS_RESOLVING or st == S.STATUS_CONNECTING then return false end
    local msg, code = client:get_error()
    if st == S.STATUS_CANT_RESOLVE then
      return self:_finish(R.RESULT_CANT_RESOLVE, 0, {}, "", msg, code or "ERR_CANT_RESOLVE")
    elseif st == S.STATUS_TLS_HANDSHAKE_ERROR then
      return self:_finish(R.RESULT_TLS_HANDSHAKE_ERROR, 0, {}, "", msg, code)
    end
    return self:_finish(R.RESULT_CANT_CONNECT, 0, {}, "", msg or "cannot connect",
      code or "ERR_CANT_CONNECT")
  elseif job.phase == "request" then
    client:poll()
    self:_sync_watch(job)
    local st = client:get_status()
    if st == S.STATUS_REQUESTING then return false end
    if client:has_response() then return self:_on_head(job) end
    local msg, code = client:get_error()
    if code == "ERR_INVALID_DATA" then
      return self:_finish(R.RESULT_CONNECTION_ERROR, 0, {}, "", msg, code)
    elseif client.outbuf and client.outbuf[1] then
      return self:_finish(R.RESULT_REQUEST_FAILED, 0, {}, "",
        "the request could not be sent whole: " .. tostring(msg), code or "ERR_CONNECTION_ERROR")
    end
    return self:_finish(R.RESULT_NO_RESPONSE, 0, {}, "", msg or "no response",
      code or "ERR_CONNECTION_ERROR")
  elseif job.phase == "body" then
    return self:_body_step(job)
  end
  return false
end

-- The response's head is in: a redirect to follow, or the body to read.
function HTTPRequest:_on_head(job)
  local client = job.client
  local code = client:get_response_code()
  local headers = client:get_response_headers()
  local dict = client:get_response_headers_as_dictionary()
  job.response_code, job.response_headers = code, headers
  local location = dict["Location"]
  if U.REDIRECTS[code] and location then
    if self.max_redirects >= 0 and job.redirections >= self.max_redirects then
      return self:_finish(R.RESULT_REDIRECT_LIMIT_REACHED, code, headers, "",
        ("more than %d redirects (the last to %s)"):format(self.max_redirects,
          U.printable(location)), "ERR_UNAVAILABLE")
    end
    -- The Location is the server's: one that would not parse is its fault.
    local next_url = U.resolve_location(job.url, location)
    local next_scheme, why = U.parse_url(next_url)
    if not next_scheme then
      return self:_finish(R.RESULT_REQUEST_FAILED, code, headers, "",
        ("the server redirected to an invalid URL '%s' (%s)"):format(U.printable(location), why),
        "ERR_INVALID_DATA")
    end
    job.redirections = job.redirections + 1
    job.headers = U.redirect_headers(job.headers, job.url, next_url)
    job.method, job.body, job.headers = U.redirect_method(code, job.method, job.body, job.headers)
    job.url = next_url
    if job.watched then loop.unwatch(job.watched); job.watched = nil end
    client:close()                     -- a fresh connection follows the redirect
    self:_connect(job)
    return true
  end

  -- The body.  Its size as the server says: Content-Length, also beside a
  -- chunked Transfer-Encoding (whose size must then agree, as Godot checks).
  self.body_len = client:get_response_body_length()
  if client:is_response_chunked() and dict["Content-Length"] then
    job.declared = U.body_length(dict["Content-Length"]:match("^%s*(%d+)%s*$"))
    self.body_len = job.declared or -1
  end
  self.downloaded = 0
  job.final = 0
  job.parts = {}
  job.decoder = job.decode and U.decoder(dict["Content-Encoding"]) or nil
  local limit = self.body_size_limit
  if not job.decoder and limit >= 0 and self.body_len > limit then
    return self:_finish(R.RESULT_BODY_SIZE_LIMIT_EXCEEDED, code, headers, "",
      ("the body (%d bytes) is larger than body_size_limit (%d bytes)"):format(self.body_len, limit),
      "ERR_INVALID_DATA")
  end
  if self.download_file ~= "" then
    local tmp = self.download_file .. ".part"
    local file, msg = io.open(tmp, "wb")
    if not file then
      return self:_finish(R.RESULT_DOWNLOAD_FILE_CANT_OPEN, code, headers, "",
        ("cannot open '%s' for writing: %s"):format(tmp, tostring(msg)), "ERR_FILE_CANT_OPEN")
    end
    job.file, job.tmp = file, tmp
    self._dl.file, self._dl.tmp = file, tmp
  end
  job.phase = "body"
  return true
end

-- Decoded (or plain) body bytes: counted against body_size_limit, then to
-- the file or memory.  Returns true, or false after finishing the job.
function HTTPRequest:_deliver(job, data)
  if data == "" then return true end
  job.final = job.final + #data
  local limit = self.body_size_limit
  if limit >= 0 and job.final > limit then
    self:_finish(R.RESULT_BODY_SIZE_LIMIT_EXCEEDED, job.response_code, job.response_headers, "",
      ("the body is larger than body_size_limit (%d bytes)%s"):format(limit,
        job.decoder and " once decompressed" or ""), "ERR_INVALID_DATA")
    return false
  end
  if job.file then
    local ok, err = job.file:write(data)
    if not ok then
      self:_finish(R.RESULT_DOWNLOAD_FILE_WRITE_ERROR, job.response_code, job.response_headers, "",
        ("cannot write '%s': %s"):format(job.tmp, tostring(err)), "ERR_FILE_CANT_WRITE")
      return false
    end
  else
    job.parts[#job.parts + 1] = data
  end
  return true
end

-- Inflates what the decoder holds plus `raw`, at most `room` bytes out;
-- returns true while the job goes on (job.inflating: output held back).
function HTTPRequest:_inflate(job, raw, room)
  local limit = self.body_size_limit
  if limit >= 0 then room = math.min(room, limit - job.final + 1) end
  local out, more = job.decoder:feed(raw, room)
  if not out then
    self:_finish(R.RESULT_BODY_DECOMPRESS_FAILED, job.response_code, job.response_headers, "",
      more, "ERR_INVALID_DATA")
    return false
  end
  job.inflating = more
  return self:_deliver(job, out)
end

function HTTPRequest:_body_step(job)
  local client = job.client
  local budget = loop.budget_bytes
  -- Output a stream held back (it expands a lot) goes first, before more
  -- is read.
  if job.inflating then
    if not self:_inflate(job, "", budget * INFLATE_FACTOR) then return false end
    if job.inflating then return true end
  end
  local raw = ""
  local chunk = math.max(256, math.min(self.download_chunk_size, budget))
  if client:get_status() == S.STATUS_BODY then
    client:set_read_chunk_size(chunk)
    raw = client:read_response_body_chunk()
  end
  if #raw > 0 then
    self.downloaded = self.downloaded + #raw
    if job.decoder then
      if not self:_inflate(job, raw, budget * INFLATE_FACTOR) then return false end
    elseif not self:_deliver(job, raw) then
      return false
    end
    self:_emit("progress", self.downloaded, self.body_len)
    if self.job ~= job then return false end  -- the handler cancelled or restarted it
  end
  local st = client:get_status()
  if st == S.STATUS_BODY then
    self:_sync_watch(job)
    local peer = client.peer
    return job.inflating or #raw >= chunk
      or (peer ~= nil and peer ~= client.tcp and peer.has_pending ~= nil and peer:has_pending())
  end
  if job.inflating then return true end
  if st ~= S.STATUS_CONNECTED and st ~= S.STATUS_DISCONNECTED then
    local msg, code = client:get_error()
    return self:_finish(R.RESULT_CONNECTION_ERROR, job.response_code, job.response_headers, "",
      msg or "the body did not arrive whole", code or "ERR_CONNECTION_ERROR")
  end
  return self:_complete(job)
end

-- The body is whole: checks, the file renamed into place, the event.
function HTTPRequest:_complete(job)
  local code, headers = job.response_code, job.client:get_response_headers()  -- with trailers
  if job.decoder then
    local ok, msg = job.decoder:finish()
    if not ok then
      return self:_finish(R.RESULT_BODY_DECOMPRESS_FAILED, code, headers, "", msg, "ERR_INVALID_DATA")
    end
  end
  if job.declared and job.declared ~= self.downloaded then
    return self:_finish(R.RESULT_CHUNKED_BODY_SIZE_MISMATCH, code, headers, "",
      ("the chunked body has %d bytes, its Content-Length says %d"):format(self.downloaded,
        job.declared), "ERR_INVALID_DATA")
  end
  if job.file then
    local file, tmp = job.file, job.tmp
    job.file = nil
    self._dl.file = nil
    local ok, err = file:close()
    if ok then ok, err = os.rename(tmp, self.download_file) end
    if not ok then
      os.remove(tmp)
      self._dl.tmp = nil
      return self:_finish(R.RESULT_DOWNLOAD_FILE_WRITE_ERROR, code, headers, "",
        ("cannot write '%s': %s"):format(self.download_file, tostring(err)), "ERR_FILE_CANT_WRITE")
    end
    self._dl.tmp = nil
    return self:_finish(R.RESULT_SUCCESS, code, headers, "")
  end
  return self:_finish(R.RESULT_SUCCESS, code, headers, core._join(job.parts))
end

------------------------------------------------------------------ polling

-- req:poll(): one non-blocking step of this request (tls.poll() steps
-- every HTTPRequest and helper object).  Returns true while a request is
-- in flight.
function HTTPRequest:poll()
  loop.poll_owner(self._driver)
  return self.job ~= nil
end

-- Ours, for scripts: blocks (sleeping in the event core) until the
-- request in flight completes (true; request_completed has run) or
-- `timeout` seconds pass (nil, message, "ERR_TIMEOUT"; the request goes on).
function HTTPRequest:wait(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    argerror(1, "wait", "seconds expected")
  end
  if not self.job then return true end
  local done = loop.run(self._driver, function() return self.job == nil end, timeout)
  if done then return true end
  return nil, ("the request did not complete within %g s"):format(timeout), "ERR_TIMEOUT"
end

return HTTPRequest
