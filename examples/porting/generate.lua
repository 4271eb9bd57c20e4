-- The Godot docs' "Generating certificates" (seed section 2.1), with
-- tlspeer instead of the openssl command: a key and a self-signed
-- certificate for localhost, saved as server.key and server.crt.
--
--   lua5.4 examples/porting/generate.lua DIR
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../_path.lua")
local tls = require "tlspeer"
local dir = arg[1] or "."

local crypto = tls.Crypto.new()
local key = crypto:generate_rsa(2048)                 -- openssl genrsa -out server.key 2048
local cert = crypto:generate_self_signed_certificate(key, "CN=localhost,O=Godot Test Server",
                                                      "20250101000000", "20350101000000")
assert(key:save(dir .. "/server.key"))                -- mode 0600
assert(cert:save(dir .. "/server.crt"))
print(cert)
print("names: " .. table.concat(cert:get_san(), " "))
