rockspec_format = "3.0"
package = "tlspeer"
version = "scm-1"

source = {
  url = "git+https://tlspeer.invalid/tlspeer.git",
}

description = {
  summary = "TLS and crypto for Lua on mbedtls, with Godot 4's networking-security classes",
  detailed = [[
tlspeer brings Godot 4's Crypto, CryptoKey, X509Certificate, TLSOptions,
StreamPeerTLS, StreamPeerTCP/TCPServer, HTTPClient and the hashing/HMAC/AES
contexts to Lua 5.4 as userdata, poll-driven for game loops and blocking
for scripts, secure by default.
]],
  license = "MIT",
  labels = { "tls", "ssl", "crypto", "mbedtls", "godot" },
}

dependencies = {
  "lua >= 5.4, < 5.5",
}

external_dependencies = {
  MBEDTLS = { header = "mbedtls/ssl.h" },
}

build = {
  type = "builtin",
  modules = {
    ["tlspeer"] = "lua/tlspeer/init.lua",
    ["tlspeer.helpers"] = "lua/tlspeer/helpers.lua",
    ["tlspeer.loop"] = "lua/tlspeer/loop.lua",
    ["tlspeer.pipe"] = "lua/tlspeer/pipe.lua",
    ["tlspeer.http"] = "lua/tlspeer/http.lua",
    ["tlspeer.httputil"] = "lua/tlspeer/httputil.lua",
    ["tlspeer.request"] = "lua/tlspeer/request.lua",
    ["tlspeer.httprequest"] = "lua/tlspeer/httprequest.lua",
    ["tlspeer.options"] = "lua/tlspeer/options.lua",
    ["tlspeer.websocket"] = "lua/tlspeer/websocket.lua",
    ["tlspeer.websocket_helpers"] = "lua/tlspeer/websocket_helpers.lua",
    ["tlspeer.classes"] = "lua/tlspeer/classes.lua",
    ["tlspeer.core"] = {
      sources = {
        "src/aux.c", "src/cabundle.c", "src/core.c", "src/crypto.c", "src/event.c",
        "src/hashing.c", "src/key.c", "src/options.c", "src/streampeer.c",
        "src/tcp.c", "src/tls.c", "src/verify.c", "src/workers.c", "src/wsframe.c",
        "src/x509.c", "src/zstream.c",
      },
      libraries = { "mbedtls", "mbedx509", "mbedcrypto", "z", "pthread" },
      incdirs = { "$(MBEDTLS_INCDIR)" },
      libdirs = { "$(MBEDTLS_LIBDIR)" },
    },
  },
  -- The reference and the LuaLS definitions (meta/: point an editor's
  -- Lua.workspace.library at the rock's meta folder, `luarocks show tlspeer`).
  copy_directories = { "docs", "meta" },
  -- The fallback CA bundle goes next to init.lua, where the module looks.
  install = {
    lua = { ["tlspeer.ca-certificates"] = "certs/ca-certificates.crt" },
  },
}
