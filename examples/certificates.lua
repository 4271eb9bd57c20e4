-- CryptoKey and X509Certificate: a development CA, a server certificate it
-- signs, files written and read back (the key encrypted), and what a
-- certificate says about itself.
--
--   lua5.4 examples/certificates.lua DIR
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"
local dir = arg[1] or "."

local crypto = tls.Crypto.new()
local NB, NA = "20250101000000", "20350101000000"

-- A CA, and a server certificate for localhost and 127.0.0.1 signed by it.
local ca_key = assert(crypto:generate_ec())
local ca = assert(crypto:generate_self_signed_certificate(ca_key, "CN=My Game dev CA,O=My Game",
                                                          NB, NA, { ca = true }))
local key = assert(crypto:generate_ec())
local cert = assert(crypto:issue_certificate(key, "CN=localhost,O=My Game", ca_key, ca, NB, NA,
                                             { san = { "127.0.0.1" } }))

-- Files: the private key encrypted with a password (mode 0600).
assert(ca:save(dir .. "/ca.crt"))
assert(cert:save(dir .. "/server.crt"))
assert(key:save(dir .. "/server.key", false, "correct horse"))

-- Reading them back: a wrong or missing password says so.
local loaded = tls.CryptoKey.new()
print("no password: " .. select(2, loaded:load(dir .. "/server.key")))
print("wrong password: " .. select(2, loaded:load(dir .. "/server.key", false, "nope")))
assert(loaded:load(dir .. "/server.key", false, "correct horse"))
print("key: " .. tostring(loaded) .. ", type " .. loaded:get_type() .. ", " .. loaded:get_bits() .. " bits")

local read = tls.X509Certificate.new()
assert(read:load(dir .. "/server.crt"))
print(read)
print("subject: " .. read:get_subject())
print("issuer: " .. read:get_issuer())
print("names: " .. table.concat(read:get_san(), " "))
print("valid: " .. read:get_not_before() .. " to " .. read:get_not_after())
print("serial: " .. read:get_serial() .. ", CA: " .. tostring(read:is_ca())
  .. ", CA's CA: " .. tostring(ca:is_ca()))
print("sha256: " .. read:get_fingerprint())

-- The certificate's public key is the key's public half.
print("matches the key: " .. tostring(read:get_public_key():save_to_string(true)
  == loaded:save_to_string(true)))

-- A chain: the server certificate and its CA in one file.
local chain = tls.X509Certificate.new()
assert(chain:load_from_string(cert:save_to_string() .. ca:save_to_string()))
print("chain length: " .. chain:get_chain_length())
