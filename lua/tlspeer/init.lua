-- tlspeer: TLS and crypto for Lua, on mbedtls, with Godot 4's classes.
local core = require "tlspeer.core"
local streampeer = require "tlspeer.streampeer"

local M = {
  _VERSION = "tlspeer scm",
  mbedtls_version = core.mbedtls_version,
}

for _, name in ipairs { "Crypto", "CryptoKey", "X509Certificate",
                        "HashingContext", "HMACContext", "AESContext",
                        "StreamPeerTCP", "TCPServer" } do
  M[name] = core[name]
end

streampeer.install(core._methods.StreamPeerTCP)

return M
