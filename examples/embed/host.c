/*
 * examples/embed/host.c - an engine-style host: Lua, tlspeer and mbedtls
 * linked into one binary, with no file of tlspeer's on disk.  It runs a
 * script (below, in the binary too) that does a TLS round trip and an
 * HTTPS request with tlspeer's own client and server, and, given a URL, a
 * tls.request to it trusting a CA read into memory.
 *
 *   make embed-example        builds build/embed-host (C) and
 *                             build/embed-host-cxx (the same file as C++)
 *   build/embed-host CERTS_DIR [HTTPS_URL]
 *
 * The host clears package.path and package.cpath: everything tlspeer needs
 * comes from package.preload (tlspeer_preload).  Compiles as C and C++.
 */
#include <stdio.h>

#ifdef __cplusplus
#include <lua.hpp>
#else
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#endif

#include "tlspeer.h"

static const char script[] =
    "local certs, url = ...\n"
    "local tls = require 'tlspeer'\n"
    "assert(package.path == '' and package.cpath == '', 'the host lets no file in')\n"
    "print(('embed: %s, tlspeer on mbedtls %s, from package.preload'):format(\n"
    "  _VERSION, tls.mbedtls_version))\n"
    "local function read(p) local f = assert(io.open(p, 'rb')); local s = f:read('*a'); f:close(); return s end\n"
    "local ca = tls.X509Certificate.new()\n"
    "assert(ca:load_from_string(read(certs .. '/ca.crt')))\n"
    "local opts = { port = 0, certificate = certs .. '/server.crt', key = certs .. '/server.key' }\n"
    "\n"
    "-- A TLS round trip: tls.listen and tls.connect, pumped in one loop.\n"
    "local echo = assert(tls.listen(opts))\n"
    "echo:on('data_received', function(conn, data) conn:send(data) end)\n"
    "local c = tls.connect { host = 'localhost', port = echo:get_local_port(), trusted = ca }\n"
    "local got = ''\n"
    "c:on('connection_established', function() c:send('ping over TLS') end)\n"
    "c:on('data_received', function(d) got = got .. d end)\n"
    "local t0 = os.clock()\n"
    "while got ~= 'ping over TLS' and os.clock() - t0 < 10 do echo:poll(); c:poll() end\n"
    "assert(got == 'ping over TLS', 'no echo: ' .. tostring(c))\n"
    "print('embed: TLS round trip: ' .. c:get_peer():get_tls_version() .. ', ' .. got)\n"
    "c:close(); echo:stop()\n"
    "\n"
    "-- HTTPS: HTTPClient against a tls.listen that answers HTTP.\n"
    "local web = assert(tls.listen(opts))\n"
    "web:on('data_received', function(conn, data)\n"
    "  conn:send('HTTP/1.1 200 OK\\r\\nContent-Length: 5\\r\\nConnection: close\\r\\n\\r\\nhello')\n"
    "end)\n"
    "local http = tls.HTTPClient.new()\n"
    "assert(http:connect_to_host('localhost', web:get_local_port(), tls.TLSOptions.client(ca)))\n"
    "local H, body, asked = tls.HTTPClient, '', false\n"
    "t0 = os.clock()\n"
    "while os.clock() - t0 < 10 do\n"
    "  web:poll(); http:poll()\n"
    "  local st = http:get_status()\n"
    "  if st == H.STATUS_CONNECTED and not asked then\n"
    "    asked = true; http:request(H.METHOD_GET, '/', {})\n"
    "  elseif st == H.STATUS_BODY then body = body .. http:read_response_body_chunk()\n"
    "  elseif asked and st ~= H.STATUS_REQUESTING then break end\n"
    "end\n"
    "assert(http:get_response_code() == 200 and body == 'hello', 'HTTPS failed: ' .. tostring(http))\n"
    "print('embed: HTTPS with HTTPClient: ' .. http:get_response_code() .. ', ' .. body)\n"
    "web:stop()\n"
    "\n"
    "-- tls.request to a server of the caller's, trusting a CA given as PEM.\n"
    "if url then\n"
    "  tls.set_certificate_bundle_override_pem(read(certs .. '/ca.crt'))\n"
    "  local b, code = tls.request(url, { timeout = 10 })\n"
    "  assert(b, code)\n"
    "  print(('embed: tls.request %s: %d, %d bytes (CA bundle: %s)'):format(url, code, #b,\n"
    "    tls.get_certificate_bundle_source()))\n"
    "end\n"
    "-- Where the default CA bundle comes from, without the system's (a\n"
    "-- build with EMBED_CA_BUNDLE=1 carries Mozilla's roots inside).\n"
    "if os.getenv('EMBED_SHOW_BUNDLE') then\n"
    "  tls.set_certificate_bundle_override_pem(nil)\n"
    "  require('tlspeer.core')._set_system_bundles {}\n"
    "  print('embed: default CA bundle: ' .. tostring(tls.get_certificate_bundle_source()))\n"
    "end\n"
    "print('embed: ok')\n";

int main(int argc, char **argv)
{
    lua_State *L = luaL_newstate();
    int status, i;
    if (L == NULL)
        return 1;
    luaL_openlibs(L);
    /* Nothing from disk: only what the binary carries. */
    lua_getglobal(L, "package");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "path");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
    tlspeer_preload(L);

    status = luaL_loadbuffer(L, script, sizeof script - 1, "=host script");
    if (status == 0) {
        for (i = 1; i < argc && i <= 2; i++)
            lua_pushstring(L, argv[i]);
        status = lua_pcall(L, i - 1, 0, 0);
    }
    if (status != 0)
        fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return status == 0 ? 0 : 1;
}
