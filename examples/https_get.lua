-- The seed's "HTTPClient with TLS" (section 3.3), ported: connect, poll
-- while connecting, send a GET, poll while requesting, then read the body
-- chunk by chunk -- the loop a game runs once per frame.
--
--   lua5.4 examples/https_get.lua [url] [ca.crt]
--
-- Without ca.crt the server is checked against the default CA bundle (the
-- system's, or SSL_CERT_FILE / SSL_CERT_DIR when set).
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"
io.stdout:setvbuf("line")    -- progress shows at once, also in a pipe
local HTTPClient = tls.HTTPClient

-- Stands in for Godot's `yield(get_tree(), "idle_frame")`: a game returns
-- from its update and goes on next frame.
local function next_frame() tls.sleep(0.005) end

local url = arg[1] or "https://example.com/"
local scheme, host, port, path = HTTPClient.parse_url(url)
if scheme ~= "https" then
  io.stderr:write("usage: lua5.4 examples/https_get.lua [https://host[:port]/path] [ca.crt]\n")
  os.exit(2, true)
end

local trusted
if arg[2] then
  trusted = tls.X509Certificate.new()
  local ok, msg = trusted:load(arg[2])
  if not ok then io.stderr:write(msg, "\n"); os.exit(1, true) end
end

local client = HTTPClient.new()
local ok, msg = client:connect_to_host(host, port, tls.TLSOptions.client(trusted))
if not ok then
  io.stderr:write("connect_to_host: ", msg, "\n")
  os.exit(1, true)
end

local deadline = os.time() + 30          -- a frame counter would do as well
local function waiting(...)
  local st = client:get_status()
  for _, s in ipairs { ... } do
    if st == s then
      if os.time() > deadline then io.stderr:write("timed out\n"); os.exit(1, true) end
      return true
    end
  end
end

while waiting(HTTPClient.STATUS_RESOLVING, HTTPClient.STATUS_CONNECTING) do
  client:poll()
  next_frame()
end

if client:get_status() ~= HTTPClient.STATUS_CONNECTED then
  print("Connection failed: " .. (client:get_error() or "status " .. client:get_status()))
  os.exit(1, true)
end
print("Connected to " .. host .. ":" .. port .. " via TLS")

client:request(HTTPClient.METHOD_GET, path, { "Accept: */*" })
while waiting(HTTPClient.STATUS_REQUESTING) do
  client:poll()
  next_frame()
end
if not client:has_response() then
  print("Request failed: " .. (client:get_error() or "no response"))
  os.exit(1, true)
end

print("Status: " .. client:get_response_code())
for _, h in ipairs(client:get_response_headers()) do print("  " .. h) end

local body = {}
while waiting(HTTPClient.STATUS_BODY) do
  client:poll()
  local chunk = client:read_response_body_chunk()
  if #chunk == 0 then next_frame() else body[#body + 1] = chunk end
end
local st = client:get_status()
if st ~= HTTPClient.STATUS_CONNECTED and st ~= HTTPClient.STATUS_DISCONNECTED then
  print("Body failed: " .. (client:get_error() or "status " .. st))
  os.exit(1, true)
end
print("Response: " .. table.concat(body))
client:close()
