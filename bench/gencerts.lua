-- bench/gencerts.lua DIR: the benchmark's server certificates, made with
-- tlspeer itself: an ECDSA P-256 and an RSA-2048 leaf for "localhost",
-- both issued by the dev CA of certs/ (run `make certs` first).
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local tls = require "tlspeer"

local dir = assert(arg[1], "usage: gencerts.lua DIR")
local function check(v, msg) if not v then error(msg, 2) end return v end

local function stamp(days)
  return os.date("!%Y%m%d%H%M%S", os.time() + days * 86400)
end

local crypto = tls.Crypto.new()
local ca_key
ca_key = tls.CryptoKey.new(); check(ca_key:load("certs/ca.key"))
local ca = tls.X509Certificate.new(); check(ca:load("certs/ca.crt"))

for _, kind in ipairs { "ec", "rsa" } do
  local key = kind == "ec" and check(crypto:generate_ec("secp256r1"))
                            or check(crypto:generate_rsa(2048))
  local crt = check(crypto:issue_certificate(key, "CN=localhost,O=tlspeer bench",
    ca_key, ca, stamp(-1), stamp(30), { san = { "localhost", "127.0.0.1" } }))
  check(key:save(dir .. "/" .. kind .. ".key"))
  check(crt:save(dir .. "/" .. kind .. ".crt"))
end
check(ca:save(dir .. "/ca.crt"))
