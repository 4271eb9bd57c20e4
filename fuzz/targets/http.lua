-- fuzz target http: HTTPClient's response parser (lua/tlspeer/http.lua).
-- The client is given a fake connected stream serving the fuzz input as
-- the server's bytes.  Input: a chunking byte (see fuzz_transport), a mode
-- byte (bit 0: HEAD instead of GET, bits 1-3: read chunk size, bit 4:
-- tls.request() - redirects included - instead of the poll loop), then the
-- response(s); keep-alive responses get another request (up to 4).
local tls = require "tlspeer"
local HTTPClient = tls.HTTPClient
local S = HTTPClient
local T = {}
function T.init() end

-- tls.request mode: every HTTPClient that "connects" gets a fake connected
-- stream serving the next part of the input (parts split at "\0NEXT\0"),
-- so redirects reach a fresh response.
local parts, chunk_byte
local real_start_connect = HTTPClient._start_connect
local function fake_start_connect(self)
  if not parts then return real_start_connect(self) end
  local t = fuzz_transport(chunk_byte .. (table.remove(parts, 1) or ""))
  function t:poll() return true end
  function t:get_status() return tls.StreamPeerTLS.STATUS_CONNECTED end
  function t:disconnect_from_stream() end
  self.peer, self.tcp = t, nil
  self.status = S.STATUS_CONNECTED
end

local function run_request(data, mode)
  -- Blocking mode: no would-block stalls (they would sleep in poll(2)).
  chunk_byte = string.char((data:byte(1) or 0) & 0x7f)
  parts = {}
  local from = 3
  while true do
    local s, e = data:find("\0NEXT\0", from, true)
    parts[#parts + 1] = data:sub(from, (s or 0) - 1)
    if not s then break end
    from = e + 1
  end
  HTTPClient._start_connect = fake_start_connect
  local sunk = 0
  local ok, body, code, headers = pcall(tls.request, "http://localhost/dir/page?q=1", {
    method = mode & 1 == 1 and "HEAD" or "GET", timeout = 5, max_redirects = 3,
    sink = (mode & 2 ~= 0) and function(chunk) sunk = sunk + #chunk end or nil,
  })
  HTTPClient._start_connect = real_start_connect
  parts = nil
  if not ok then error(body, 0) end
  if body == nil and type(headers) == "number" and mode & 2 ~= 0 then
    -- A non-2xx status with a sink: nil, message, status, headers (the
    -- body kept out of the sink unless keep_error_body).
    assert(headers < 200 or headers > 299, "a 2xx status reported as a failure")
    assert(type(code) == "string" and code:find("keep_error_body", 1, true), "no message")
  else
    fuzz_result("tls.request", body, code, headers)
  end
  if ok and body then assert(sunk <= #data and (type(body) ~= "string" or #body <= #data)) end
end

function T.run(data)
  local mode = data:byte(2) or 0
  if mode & 16 ~= 0 then return run_request(data, mode) end
  local t = fuzz_transport(data:sub(1, 1) .. data:sub(3))
  local input_len = #data
  local eof = false
  local get = t.get_partial_data
  function t:get_partial_data(n)
    local s, msg, code = get(self, n)
    if not s then eof = true end
    return s, msg, code
  end
  function t:poll() return true end
  function t:get_status()
    return eof and tls.StreamPeerTLS.STATUS_DISCONNECTED or tls.StreamPeerTLS.STATUS_CONNECTED
  end
  function t:disconnect_from_stream() eof = true end

  local c = HTTPClient.new()
  c:set_read_chunk_size(256 << ((mode >> 1) & 7))
  c.host, c.port, c.use_tls = "localhost", 80, false
  c.status, c.peer = S.STATUS_CONNECTED, t
  local method = mode & 1 == 1 and S.METHOD_HEAD or S.METHOD_GET
  local budget = 4 * input_len + 64
  local body = 0
  for _ = 1, 4 do
    if c:get_status() ~= S.STATUS_CONNECTED then break end
    local ok = fuzz_result("request", c:request(method, "/", { "X-Fuzz: 1" }))
    if not ok then break end
    while c:get_status() == S.STATUS_REQUESTING and budget > 0 do
      assert(c:poll())
      budget = budget - 1
    end
    c:has_response(); c:get_response_code(); c:get_response_headers()
    c:is_response_chunked(); c:get_response_body_length()
    local d = c:get_response_headers_as_dictionary()
    for k in pairs(d) do assert(type(k) == "string") end
    while c:get_status() == S.STATUS_BODY and budget > 0 do
      local chunk = c:read_response_body_chunk()
      assert(type(chunk) == "string", "read_response_body_chunk")
      body = body + #chunk
      budget = budget - 1
    end
    tostring(c)
    local st = c:get_status()
    if st == S.STATUS_CONNECTION_ERROR then
      local msg, code = c:get_error()
      assert(type(msg) == "string" and type(code) == "string", "get_error")
    end
    -- Memory stays bounded by the input: no body byte comes from nowhere,
    -- and the input buffer never holds more than was sent.
    assert(body <= input_len, "more body bytes than input bytes")
    if c.inbuf then assert(#c.inbuf.data <= input_len, "input buffer grew past the input") end
  end
  c:close()
end
return T
