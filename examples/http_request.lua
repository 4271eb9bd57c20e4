-- The seed's HTTPS example as a game writes it with HTTPRequest (Godot's
-- node, as a poll-driven object): start the request, then one tls.poll()
-- per frame; the result comes as the request_completed event.  Redirects,
-- gzip, TLS verification and the timeout are HTTPRequest's business.
--
--   lua5.4 examples/http_request.lua [url] [ca.crt] [download_file]
--
-- Without ca.crt the server is checked against the default CA bundle (the
-- system's, or SSL_CERT_FILE / SSL_CERT_DIR when set).  With a
-- download_file the body goes there (through download_file.part, renamed
-- when whole) instead of into memory.
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"
io.stdout:setvbuf("line")

-- Stands in for the engine's frame: love.update, a Defold script's update...
local sleep = require("tlspeer.core")._sleep
local function next_frame() sleep(1 / 60) end

local url = arg[1] or "https://example.com/"
local req = tls.HTTPRequest.new()
if arg[2] then
  local ca = tls.X509Certificate.new()
  local ok, msg = ca:load(arg[2])
  if not ok then io.stderr:write(msg, "\n"); os.exit(1, true) end
  req:set_tls_options(tls.TLSOptions.client(ca))
end
if arg[3] then req:set_download_file(arg[3]) end
req:set_timeout(30)                       -- the whole request, redirects included

local done = false
req:on("progress", function(downloaded, size)
  if size > 0 then
    print(("Downloaded %d of %d bytes"):format(downloaded, size))
  else
    print(("Downloaded %d bytes"):format(downloaded))
  end
end)
req:on("request_completed", function(result, code, headers, body)
  done = true
  if result ~= tls.HTTPRequest.RESULT_SUCCESS then
    local msg, err = req:get_error()
    print(("Request failed: result %d (%s), %s"):format(result, err, msg))
    os.exit(1, true)
  end
  print("Status: " .. code)
  for _, h in ipairs(headers) do print("  " .. h) end
  if arg[3] then
    print("Saved to " .. arg[3])
  else
    print("Response: " .. body)
  end
end)

local ok, msg = req:request(url, { "Accept: */*" })
if not ok then
  io.stderr:write("request: ", msg, "\n")
  os.exit(1, true)
end

-- The game loop: one short step of everything tlspeer runs, per frame.
local frames = 0
while not done do
  tls.poll()
  frames = frames + 1
  next_frame()
end
print(("Done in %d frames"):format(frames))
