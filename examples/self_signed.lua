-- A self-signed certificate, as the seed describes: generate a key and a
-- certificate for localhost, serve with them, and have the client trust
-- exactly that certificate (no CA involved).
--
--   lua5.4 examples/self_signed.lua [folder]
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"
io.stdout:setvbuf("line")    -- progress shows at once, also in a pipe

local dir = arg[1] or os.tmpname()
if not arg[1] then os.remove(dir); os.execute("mkdir -p " .. dir) end

local crypto = tls.Crypto.new()
local key = crypto:generate_ec()
local cert = crypto:generate_self_signed_certificate(key, "CN=localhost,O=tlspeer example",
  os.date("!%Y%m%d%H%M%S", os.time() - 3600), os.date("!%Y%m%d%H%M%S", os.time() + 365 * 86400))
assert(key:save(dir .. "/self.key"))     -- mode 0600
assert(cert:save(dir .. "/self.crt"))
print("made " .. tostring(cert) .. " in " .. dir)

local server = assert(tls.listen { port = 0, certificate = dir .. "/self.crt", key = dir .. "/self.key" })
server:on("data_received", function(conn, data) conn:send("echo: " .. data) end)

local client = tls.connect {
  host = "localhost", port = server:get_local_port(),
  trusted = dir .. "/self.crt",        -- trust this one certificate
}
client:on("connection_established", function() client:send("Hello, secure world!\n") end)
client:on("data_received", function(data)
  io.write("client: ", data)
  print("client: the server showed " .. client:get_peer():get_peer_certificate():get_fingerprint())
  print("        we trusted        " .. cert:get_fingerprint())
  client:close()
end)
client:on("connection_failed", function(message) print("client: failed: " .. message) end)

while client:poll() do server:poll() end
server:stop()
if not arg[1] then os.execute("rm -rf " .. dir) end
