-- TLSOptions: the static constructors, getters, option validation and
-- tostring; the default CA bundle: its lookup order (in subprocesses with a
-- controlled environment: this machine's or CI's SSL_CERT_FILE and
-- SSL_CERT_DIR must not leak in), the override, and loading it once.
local H = require "helpers"
local tls = H.tls

local O = tls.TLSOptions
local TLS = tls.StreamPeerTLS
local HAS_TLS13 = not tls.mbedtls_version:match("^2%.")

local function load_key(path)
  local k = tls.CryptoKey.new()
  assert(k:load(path))
  return k
end

local function load_cert(path)
  local c = tls.X509Certificate.new()
  assert(c:load(path))
  return c
end

local CA, SKEY, SCERT, CKEY, CCERT

setup(function()
  CA = load_cert("certs/ca.crt")
  SKEY, SCERT = load_key("certs/server.key"), load_cert("certs/server.crt")
  CKEY, CCERT = load_key("certs/client.key"), load_cert("certs/client.crt")
end)

teardown(function() H.cleanup() end)

-- Our client and server over tls.pipe(); returns both statuses and peers.
local function handshake(copts, sopts)
  local a, b = tls.pipe()
  local c, s = TLS.new(), TLS.new()
  assert.is_true(c:connect_to_stream(a, "localhost", copts))
  assert.is_true(s:accept_stream(b, sopts or O.server(SKEY, SCERT)))
  for _ = 1, 500 do
    c:poll()
    s:poll()
    local cs, ss = c:get_status(), s:get_status()
    if (cs ~= TLS.STATUS_HANDSHAKING and ss ~= TLS.STATUS_HANDSHAKING)
       or cs >= TLS.STATUS_ERROR or ss >= TLS.STATUS_ERROR then break end
  end
  return c:get_status(), s:get_status(), c, s
end

-- Raises with the failure when f(...) does not raise; returns the message.
local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error, got a result: " .. tostring(err))
  return tostring(err)
end

describe("TLSOptions constructors and getters", function()
  it("has no new(); only the static constructors make them", function()
    assert.is_nil(O.new)
    assert.is_function(O.client)
    assert.is_function(O.client_unsafe)
    assert.is_function(O.server)
    assert.is_false(pcall(O))
  end)

  it("client() with the default bundle", function()
    local o = assert(O.client())
    assert.is_false(o:is_server())
    assert.is_false(o:is_unsafe_client())
    assert.equal("", o:get_common_name_override())
    assert.is_true(tls.preload_certificate_bundle(true))   -- it may load on a worker
    local chain = o:get_trusted_ca_chain()
    assert.equal("tlspeer.X509Certificate", getmetatable(chain).__name)
    assert.is_true(chain:get_chain_length() >= 1)
    assert.is_nil(o:get_private_key())
    assert.is_nil(o:get_own_certificate())
    assert.equal("TLSOptions (client, default CA bundle)", tostring(o))
  end)

  it("client(trusted_chain, common_name_override, {certificate, key})", function()
    local o = assert(O.client(CA, "example.org", { certificate = CCERT, key = CKEY }))
    assert.is_false(o:is_server())
    assert.is_false(o:is_unsafe_client())
    assert.equal("example.org", o:get_common_name_override())
    assert.is_true(rawequal(CA, o:get_trusted_ca_chain()))
    assert.is_true(rawequal(CKEY, o:get_private_key()))
    assert.is_true(rawequal(CCERT, o:get_own_certificate()))
    assert.matches("client", tostring(o))
    assert.matches("custom trusted chain", tostring(o))
  end)

  it("the common name override is the name checked", function()
    local ok = handshake(assert(O.client(CA, "localhost")))
    assert.equal(TLS.STATUS_CONNECTED, ok)
    local bad, _, c = handshake(assert(O.client(CA, "example.org")))
    assert.equal(TLS.STATUS_ERROR_HOSTNAME_MISMATCH, bad)
    assert.matches("example.org", (c:get_error()), 1, true)
  end)

  it("client_unsafe(), with and without a chain", function()
    local o = assert(O.client_unsafe())
    assert.is_false(o:is_server())
    assert.is_true(o:is_unsafe_client())
    assert.equal("", o:get_common_name_override())
    assert.is_nil(o:get_trusted_ca_chain())
    assert.matches("unsafe", tostring(o))
    local o2 = assert(O.client_unsafe(CA, { alpn = { "h2" } }))
    assert.is_true(o2:is_unsafe_client())
    assert.is_true(rawequal(CA, o2:get_trusted_ca_chain()))
    -- Unsafe: no chain to check against, and still it connects.
    local st = handshake(o)
    assert.equal(TLS.STATUS_CONNECTED, st)
  end)

  it("server(key, certificate, opts)", function()
    local o = assert(O.server(SKEY, SCERT))
    assert.is_true(o:is_server())
    assert.is_false(o:is_unsafe_client())
    assert.equal("", o:get_common_name_override())
    assert.is_nil(o:get_trusted_ca_chain())
    assert.is_true(rawequal(SKEY, o:get_private_key()))
    assert.is_true(rawequal(SCERT, o:get_own_certificate()))
    assert.equal("TLSOptions (server, client certificates: none)", tostring(o))
    local o2 = assert(O.server(SKEY, SCERT, { trusted_chain = CA }))
    assert.is_true(rawequal(CA, o2:get_trusted_ca_chain()))
    assert.equal("TLSOptions (server, client certificates: required)", tostring(o2))
    local o3 = assert(O.server(SKEY, SCERT, { trusted_chain = CA, verify = "optional" }))
    assert.equal("TLSOptions (server, client certificates: optional)", tostring(o3))
    local o4 = assert(O.server(SKEY, SCERT, { trusted_chain = CA, verify = "none" }))
    assert.equal("TLSOptions (server, client certificates: none)", tostring(o4))
  end)

  it("verify = \"required\" is the default with a trusted_chain and really requires", function()
    -- (A TLS 1.3 client finishes before the server refuses it: only the
    -- server's verdict is checked here.)
    local _, ss, _, s = handshake(O.client(CA), O.server(SKEY, SCERT, { trusted_chain = CA }))
    assert.equal(TLS.STATUS_ERROR, ss)
    assert.matches("certificate", (s:get_error()))
    local cs2, ss2 = handshake(O.client(CA, "", { certificate = CCERT, key = CKEY }),
                               O.server(SKEY, SCERT, { trusted_chain = CA }))
    assert.equal(TLS.STATUS_CONNECTED, cs2)
    assert.equal(TLS.STATUS_CONNECTED, ss2)
    local cs3, ss3 = handshake(O.client(CA), O.server(SKEY, SCERT, { trusted_chain = CA,
                                                                     verify = "none" }))
    assert.equal(TLS.STATUS_CONNECTED, cs3)
    assert.equal(TLS.STATUS_CONNECTED, ss3)
  end)

  it("closed options say so and refuse to be used", function()
    local o = O.client(CA)
    getmetatable(o).__close(o)        -- (a <close> variable: spec 90)
    assert.equal("TLSOptions (closed)", tostring(o))
    assert.matches("closed TLSOptions", raises(o.is_server, o))
    local a = tls.pipe()
    assert.matches("closed TLSOptions", raises(TLS.new().connect_to_stream, TLS.new(), a,
                                               "localhost", o))
  end)

  -- (regression: closing TLSOptions (<close>) while a peer uses them:
  -- spec/90-lua54_close_spec.lua)
end)

describe("TLSOptions validation", function()
  it("bad constructor arguments raise", function()
    for _, v in ipairs { "ca.crt", 1, true, {}, SKEY } do
      raises(O.client, v)
      raises(O.client_unsafe, v)
    end
    for _, v in ipairs { {}, true, SKEY } do raises(O.client, nil, v) end
    for _, v in ipairs { "x", 1, true, SKEY } do
      raises(O.client, nil, nil, v)
      raises(O.client_unsafe, nil, v)
      raises(O.server, SKEY, SCERT, v)
    end
    raises(O.server)
    raises(O.server, nil, SCERT)
    raises(O.server, SKEY, nil)
    for _, v in ipairs { "certs/server.key", 1, {}, SCERT } do
      raises(O.server, v, SCERT)
    end
    for _, v in ipairs { "certs/server.crt", 1, {}, SKEY } do
      raises(O.server, SKEY, v)
    end
  end)

  it("client certificate and key: objects, together, matching", function()
    assert.matches("go together", raises(O.client, CA, "", { certificate = CCERT }))
    assert.matches("go together", raises(O.client, CA, "", { key = CKEY }))
    assert.matches("go together", raises(O.client_unsafe, nil, { key = CKEY }))
    assert.matches("certificate", raises(O.client, CA, "", { certificate = "certs/client.crt",
                                                             key = CKEY }))
    assert.matches("key", raises(O.client, CA, "", { certificate = CCERT, key = 42 }))
    local o, msg, code = O.client(CA, "", { certificate = CCERT, key = SKEY })
    assert.is_nil(o)
    assert.equal("ERR_INVALID_PARAMETER", code)
    assert.matches("does not match", msg)
    o, msg, code = O.client(CA, "", { certificate = CCERT, key = CCERT:get_public_key() })
    assert.is_nil(o)
    assert.equal("ERR_INVALID_PARAMETER", code)
    assert.is_string(msg)
  end)

  it("server key and certificate must be usable and match", function()
    local cases = {
      { SCERT:get_public_key(), SCERT, "public only" },
      { SKEY, CCERT, "does not match" },
      { SKEY, tls.X509Certificate.new(), "empty" },
      { tls.CryptoKey.new(), SCERT, "empty" },
      { CKEY, SCERT, "does not match" },
    }
    for _, case in ipairs(cases) do
      local o, msg, code = O.server(case[1], case[2])
      assert.is_nil(o)
      assert.equal("ERR_INVALID_PARAMETER", code)
      assert.matches(case[3], msg, 1, true)
    end
  end)

  it("alpn: 1 to 16 names of 1 to 255 bytes", function()
    local sixteen = {}
    for i = 1, 16 do sixteen[i] = "p" .. i end
    assert.is_not_nil(O.client(CA, "", { alpn = sixteen }))
    assert.is_not_nil(O.server(SKEY, SCERT, { alpn = { ("x"):rep(255) } }))
    local seventeen = { H.unpack(sixteen) }
    seventeen[17] = "p17"
    for _, bad in ipairs { "h2", 1, true, {}, seventeen, { "" }, { ("x"):rep(256) },
                           { 1 }, { "h2", false }, { {} } } do
      assert.matches("alpn", raises(O.client, CA, "", { alpn = bad }))
      assert.matches("alpn", raises(O.client_unsafe, nil, { alpn = bad }))
      assert.matches("alpn", raises(O.server, SKEY, SCERT, { alpn = bad }))
    end
  end)

  it("alpn: no protocol in common is an error, one in common is chosen", function()
    local cs, ss, c, s = handshake(O.client(CA, "", { alpn = { "h2", "http/1.1" } }),
                                   O.server(SKEY, SCERT, { alpn = { "http/1.1" } }))
    assert.equal(TLS.STATUS_CONNECTED, cs)
    assert.equal(TLS.STATUS_CONNECTED, ss)
    assert.equal("http/1.1", c:get_alpn_protocol())
    assert.equal("http/1.1", s:get_alpn_protocol())
    local cs2, ss2 = handshake(O.client(CA, "", { alpn = { "h2" } }),
                               O.server(SKEY, SCERT, { alpn = { "http/1.1" } }))
    assert.is_true(cs2 == TLS.STATUS_ERROR or ss2 == TLS.STATUS_ERROR)
  end)

  it("min_version: \"1.2\" or \"1.3\" (where mbedtls has it), anything else raises", function()
    assert.is_not_nil(O.client(CA, "", { min_version = "1.2" }))
    assert.is_not_nil(O.server(SKEY, SCERT, { min_version = "1.2" }))
    for _, bad in ipairs { "1.1", "1.0", "TLSv1.2", "", "1.4", true, {} } do
      assert.matches("min_version", raises(O.client, CA, "", { min_version = bad }))
      assert.matches("min_version", raises(O.server, SKEY, SCERT, { min_version = bad }))
    end
    local c13, msg, code = O.client(CA, "", { min_version = "1.3" })
    local s13 = O.server(SKEY, SCERT, { min_version = "1.3" })
    if not HAS_TLS13 then
      assert.is_nil(c13)
      assert.is_nil(s13)
      assert.equal("ERR_UNAVAILABLE", code)
      assert.matches("1.3", msg, 1, true)
    else
      assert.is_not_nil(c13, msg)
      local cs, ss, c = handshake(c13, O.server(SKEY, SCERT))
      assert.equal(TLS.STATUS_CONNECTED, cs)
      assert.equal(TLS.STATUS_CONNECTED, ss)
      assert.equal("TLSv1.3", c:get_tls_version())
      -- A 1.3-only server refuses a 1.2-only client... which we cannot
      -- make; a 1.3-only client against a 1.3-only server is fine.
      local cs2 = handshake(O.client(CA, "", { min_version = "1.3" }), s13)
      assert.equal(TLS.STATUS_CONNECTED, cs2)
    end
  end)

  it("ciphersuites: IANA names; unknown ones are ERR_INVALID_PARAMETER", function()
    for _, bad in ipairs { "TLS_AES_128_GCM_SHA256", 1, true, {}, { 1 }, { false } } do
      assert.matches("ciphersuites", raises(O.client, CA, "", { ciphersuites = bad }))
      assert.matches("ciphersuites", raises(O.server, SKEY, SCERT, { ciphersuites = bad }))
    end
    local o, msg, code = O.client(CA, "", { ciphersuites = { "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                                                             "TLS_NO_SUCH_SUITE" } })
    assert.is_nil(o)
    assert.equal("ERR_INVALID_PARAMETER", code)
    assert.matches("TLS_NO_SUCH_SUITE", msg, 1, true)
    o, msg, code = O.server(SKEY, SCERT, { ciphersuites = { "ECDHE-ECDSA-AES128-GCM-SHA256" } })
    assert.is_nil(o)
    assert.equal("ERR_INVALID_PARAMETER", code)
    -- A TLS 1.2 suite both sides name is the one used.  (With mbedtls 3.6
    -- a client that lists only TLS 1.2 suites still offers TLS 1.3, and an
    -- mbedtls 3.6 server then fails: see the report; 2.28 only.)
    if HAS_TLS13 then
      local s13 = "TLS_CHACHA20_POLY1305_SHA256"
      local cs2, ss2, c2 = handshake(assert(O.client(CA, "", { ciphersuites = { s13 } })),
                                     O.server(SKEY, SCERT))
      assert.equal(TLS.STATUS_CONNECTED, cs2)
      assert.equal(TLS.STATUS_CONNECTED, ss2)
      assert.equal(s13, c2:get_cipher_suite())
      return
    end
    local suite = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
    local cs, ss, c, s = handshake(assert(O.client(CA, "", { ciphersuites = { suite } })),
                                   assert(O.server(SKEY, SCERT, { ciphersuites = {
                                     "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", suite } })))
    assert.equal(TLS.STATUS_CONNECTED, cs, tostring((c:get_error())))
    assert.equal(TLS.STATUS_CONNECTED, ss, tostring((s:get_error())))
    assert.equal(suite, c:get_cipher_suite())
    assert.equal(suite, s:get_cipher_suite())
    assert.equal("TLSv1.2", c:get_tls_version())
  end)

  it("verify: \"none\" | \"optional\" | \"required\", and needs a trusted_chain", function()
    for _, bad in ipairs { "maybe", "", "REQUIRED", 1, true, {} } do
      raises(O.server, SKEY, SCERT, { trusted_chain = CA, verify = bad })
    end
    for _, bad in ipairs { "certs/ca.crt", 1, true, {}, SKEY } do
      raises(O.server, SKEY, SCERT, { trusted_chain = bad })
    end
    for _, mode in ipairs { "optional", "required" } do
      local o, msg, code = O.server(SKEY, SCERT, { verify = mode })
      assert.is_nil(o)
      assert.equal("ERR_INVALID_PARAMETER", code)
      assert.matches("trusted_chain", msg)
    end
    assert.is_not_nil(O.server(SKEY, SCERT, { verify = "none" }))
  end)

  it("peers take the right kind of options, and raise for the wrong one", function()
    local a, b = tls.pipe()
    assert.matches("client", raises(TLS.new().connect_to_stream, TLS.new(), a, "localhost",
                                    O.server(SKEY, SCERT)))
    assert.matches("server", raises(TLS.new().accept_stream, TLS.new(), b, O.client(CA)))
    raises(TLS.new().accept_stream, TLS.new(), b, nil)
    raises(TLS.new().accept_stream, TLS.new(), b, "options")
    raises(TLS.new().connect_to_stream, TLS.new(), a, "localhost", {})
  end)
end)

-- ---------------------------------------------------------------------
-- The default CA bundle, in subprocesses.

local ABS = (select(2, H.run("pwd")):gsub("%s+$", ""))
local CA_PATH = ABS .. "/certs/ca.crt"
local SHIPPED = "certs/ca-certificates.crt"
local NO_ENV = { SSL_CERT_FILE = false, SSL_CERT_DIR = false }

-- The subprocess' prelude: put(name, value) reports; trusts_dev_server()
-- runs TLSOptions.client() (the default bundle) against our dev server.
local PRELUDE = [==[
local tls = require "tlspeer"
local core = require "tlspeer.core"
local function put(k, ...)
  local t = { n = select("#", ...), ... }
  for i = 1, t.n do t[i] = (tostring(t[i]):gsub("\n", "\\n")) end
  io.write(k, "\t", table.concat(t, "\t"), "\n")
end
local function ld(cls, p) local o = tls[cls].new(); assert(o:load(p)); return o end
local function trusts_dev_server(copts)
  copts = copts or assert(tls.TLSOptions.client())
  local a, b = tls.pipe()
  local c, s = tls.StreamPeerTLS.new(), tls.StreamPeerTLS.new()
  assert(c:connect_to_stream(a, "localhost", copts))
  assert(s:accept_stream(b, tls.TLSOptions.server(ld("CryptoKey", "certs/server.key"),
                                                  ld("X509Certificate", "certs/server.crt"))))
  for i = 1, 2500 do
    c:poll(); s:poll()
    if c:get_status() ~= 1 then break end
    if i > 100 then core._sleep(0.002) end  -- the bundle may still be loading
  end
  return c:get_status() == 2, (c:get_error())
end
local function chain_len()
  local o = assert(tls.TLSOptions.client())
  tls.preload_certificate_bundle(true)       -- the load may be on a worker
  return o:get_trusted_ca_chain():get_chain_length()
end
]==]

-- Runs PRELUDE .. body with `env` (added to NO_ENV); returns the reports
-- as { name = { values } } and the raw output.
local function sub(env, body)
  local e = {}
  for k, v in pairs(NO_ENV) do e[k] = v end
  for k, v in pairs(env or {}) do e[k] = v end
  local ok, out = H.lua_env(e, PRELUDE .. body)
  assert(ok, out)
  local r = {}
  for line in out:gmatch("[^\n]+") do
    local fields = {}
    for f in (line .. "\t"):gmatch("([^\t]*)\t") do fields[#fields + 1] = f end
    r[table.remove(fields, 1)] = fields
  end
  return r, out
end

local function count_pem(s)
  local n = 0
  for _ in s:gmatch("BEGIN CERTIFICATE") do n = n + 1 end
  return n
end

describe("the default CA bundle", function()
  it("with no environment and no OS bundle: the shipped Mozilla bundle, 100+ certificates", function()
    local r, out = sub(nil, [[
      core._set_system_bundles {}
      put("source", tls.get_certificate_bundle_source())
      put("override", tls.get_certificate_bundle_override())
      put("len", chain_len())
      put("trusted", trusts_dev_server())
    ]])
    assert.is_not_nil(r.source, out)
    assert.matches("certs/ca%-certificates%.crt$", r.source[1])
    assert.equal("nil", r.override[1])
    local n = tonumber(r.len[1])
    assert.is_true(n >= 100, out)
    assert.is_true(n <= count_pem(H.read(SHIPPED)), out)
    -- The Mozilla roots do not know our dev CA.
    assert.equal("false", r.trusted[1])
    assert.matches("not trusted", r.trusted[2])
  end)

  it("SSL_CERT_FILE comes before the OS bundle", function()
    local dir = H.tmpdir()
    local os_bundle = H.write(dir .. "/os.pem", H.read(SHIPPED))
    local r, out = sub({ SSL_CERT_FILE = CA_PATH }, ([[
      core._set_system_bundles { %q }
      put("source", tls.get_certificate_bundle_source())
      put("len", chain_len())
      put("trusted", trusts_dev_server())
    ]]):format(os_bundle))
    assert.equal("SSL_CERT_FILE/SSL_CERT_DIR", r.source[1], out)
    assert.equal("1", r.len[1])
    assert.equal("true", r.trusted[1], out)
  end)

  it("SSL_CERT_DIR: every certificate in the folders (':'-separated) is trusted", function()
    local empty, dir = H.tmpdir(), H.tmpdir()
    H.write(dir .. "/dev-ca.pem", H.read("certs/ca.crt"))
    local r, out = sub({ SSL_CERT_DIR = empty .. ":" .. dir }, [[
      core._set_system_bundles {}
      put("source", tls.get_certificate_bundle_source())
      put("len", chain_len())
      put("trusted", trusts_dev_server())
    ]])
    assert.equal("SSL_CERT_FILE/SSL_CERT_DIR", r.source[1], out)
    assert.equal("1", r.len[1])
    assert.equal("true", r.trusted[1], out)
  end)

  it("without the environment, the OS locations in order, the first that loads", function()
    local dir = H.tmpdir()
    local garbage = H.write(dir .. "/garbage.pem", "not a certificate\n")
    local first = H.write(dir .. "/first.pem", H.read("certs/ca.crt"))
    local second = H.write(dir .. "/second.pem", H.read(SHIPPED))
    local r, out = sub({ SSL_CERT_FILE = "", SSL_CERT_DIR = "" }, ([[
      core._set_system_bundles { %q, %q, %q, %q }
      put("source", tls.get_certificate_bundle_source())
      put("len", chain_len())
      put("trusted", trusts_dev_server())
    ]]):format(dir .. "/missing.pem", garbage, first, second))
    assert.equal(first, r.source[1], out)
    assert.equal("1", r.len[1])
    assert.equal("true", r.trusted[1], out)
  end)

  it("the override alone wins, get_certificate_bundle_override returns it, nil resets", function()
    local r, out = sub({ SSL_CERT_FILE = CA_PATH }, ([[
      core._set_system_bundles {}
      put("before", tls.get_certificate_bundle_source())
      put("before_trusted", trusts_dev_server())
      tls.set_certificate_bundle_override(%q)
      put("override", tls.get_certificate_bundle_override())
      put("source", tls.get_certificate_bundle_source())
      put("len", chain_len())
      put("trusted", trusts_dev_server())
      tls.set_certificate_bundle_override(nil)
      put("reset", tls.get_certificate_bundle_override())
      put("after", tls.get_certificate_bundle_source())
      put("after_trusted", trusts_dev_server())
      tls.set_certificate_bundle_override("")
      put("empty", tls.get_certificate_bundle_override())
      put("raises", pcall(tls.set_certificate_bundle_override, {}))
    ]]):format(SHIPPED))
    assert.equal("SSL_CERT_FILE/SSL_CERT_DIR", r.before[1], out)
    assert.equal("true", r.before_trusted[1], out)
    assert.equal(SHIPPED, r.override[1])
    assert.equal("override " .. SHIPPED, r.source[1])
    assert.is_true(tonumber(r.len[1]) >= 100)
    assert.equal("false", r.trusted[1], out)       -- SSL_CERT_FILE is not used
    assert.equal("nil", r.reset[1])
    assert.equal("SSL_CERT_FILE/SSL_CERT_DIR", r.after[1])
    assert.equal("true", r.after_trusted[1], out)
    assert.equal("nil", r.empty[1])
    assert.equal("false", r.raises[1])
  end)

  it("set_certificate_bundle_override_pem: the override from PEM in memory, one override at a time", function()
    local r, out = sub({ SSL_CERT_FILE = SHIPPED }, ([[
      core._set_system_bundles {}
      put("before_trusted", trusts_dev_server())
      local f = assert(io.open(%q, "rb")); local pem = f:read("*a"); f:close()
      tls.set_certificate_bundle_override_pem(pem)
      put("source", tls.get_certificate_bundle_source())
      put("len", chain_len())
      put("trusted", trusts_dev_server())
      put("path_override", tls.get_certificate_bundle_override())
      -- A path override replaces the PEM one, and back.
      tls.set_certificate_bundle_override(%q)
      put("by_path", tls.get_certificate_bundle_source())
      tls.set_certificate_bundle_override_pem(pem)
      put("by_pem", tls.get_certificate_bundle_source())
      put("path_after", tls.get_certificate_bundle_override())
      tls.set_certificate_bundle_override_pem(nil)
      put("reset", tls.get_certificate_bundle_source())
      put("reset_trusted", trusts_dev_server())
      tls.set_certificate_bundle_override_pem("no certificate in here")
      put("junk", tls.TLSOptions.client())
      tls.set_certificate_bundle_override_pem("")
      put("empty", tls.get_certificate_bundle_source())
      put("raises", pcall(tls.set_certificate_bundle_override_pem, {}))
    ]]):format(CA_PATH, SHIPPED))
    assert.equal("false", r.before_trusted[1], out)
    assert.equal("override (PEM in memory)", r.source[1], out)
    assert.equal("1", r.len[1])
    assert.equal("true", r.trusted[1], out)
    assert.equal("nil", r.path_override[1])
    assert.equal("override " .. SHIPPED, r.by_path[1])
    assert.equal("override (PEM in memory)", r.by_pem[1])
    assert.equal("nil", r.path_after[1])
    assert.equal("SSL_CERT_FILE/SSL_CERT_DIR", r.reset[1])
    assert.equal("false", r.reset_trusted[1], out)
    assert.equal("nil", r.junk[1], out)
    assert.matches("PEM holds no certificate", r.junk[2])
    assert.equal("ERR_INVALID_DATA", r.junk[3])
    assert.equal("SSL_CERT_FILE/SSL_CERT_DIR", r.empty[1])
    assert.equal("false", r.raises[1])
  end)

  it("an override that cannot be read fails, naming the path, with no fallback", function()
    local missing = H.tmpdir() .. "/no-such-bundle.pem"
    local r, out = sub({ SSL_CERT_FILE = CA_PATH }, ([[
      tls.set_certificate_bundle_override(%q)
      put("client", tls.TLSOptions.client())
      put("source", tls.get_certificate_bundle_source())
      local a = tls.pipe()
      put("connect", tls.StreamPeerTLS.new():connect_to_stream(a, "localhost"))
      put("explicit", tls.TLSOptions.client(ld("X509Certificate", "certs/ca.crt")) ~= nil)
      put("unsafe", tls.TLSOptions.client_unsafe() ~= nil)
      tls.set_certificate_bundle_override(%q)
      put("fixed", tls.get_certificate_bundle_source())
      put("fixed_trusted", trusts_dev_server())
    ]]):format(missing, CA_PATH))
    assert.equal("nil", r.client[1], out)
    assert.matches(missing, r.client[2], 1, true)
    assert.matches("^ERR_", r.client[3])
    assert.equal("nil", r.source[1])
    assert.matches(missing, r.source[2], 1, true)
    assert.equal("nil", r.connect[1])
    assert.matches(missing, r.connect[2], 1, true)
    assert.equal(r.client[3], r.connect[3])
    assert.equal("true", r.explicit[1])
    assert.equal("true", r.unsafe[1])
    assert.equal("override " .. CA_PATH, r.fixed[1])
    assert.equal("true", r.fixed_trusted[1], out)
  end)

  it("is loaded once: clients share it until the override is set", function()
    local dir = H.tmpdir()
    local bundle = H.write(dir .. "/bundle.pem", H.read("certs/ca.crt"))
    local r, out = sub({ SSL_CERT_FILE = bundle }, ([[
      local o1, o2 = tls.TLSOptions.client(), tls.TLSOptions.client()
      tls.preload_certificate_bundle(true)
      local c1 = o1:get_trusted_ca_chain()
      put("shared", rawequal(c1, o2:get_trusted_ca_chain()))
      put("len1", c1:get_chain_length())
      -- The file changes: nothing is read again.
      local src = assert(io.open(%q, "rb"))
      local f = assert(io.open(%q, "wb")); f:write(src:read("*a")); f:close(); src:close()
      local o3 = tls.TLSOptions.client()
      put("still", rawequal(c1, o3:get_trusted_ca_chain()), o3:get_trusted_ca_chain():get_chain_length())
      put("system", select(2, tls.get_system_ca_certificates():gsub("BEGIN CERTIFICATE", "")))
      -- Setting the override (even to nil) drops the cache.
      tls.set_certificate_bundle_override(nil)
      local o4 = tls.TLSOptions.client()
      tls.preload_certificate_bundle(true)
      put("reloaded", rawequal(c1, o4:get_trusted_ca_chain()), o4:get_trusted_ca_chain():get_chain_length())
      put("old", rawequal(c1, o1:get_trusted_ca_chain()))
    ]]):format(SHIPPED, bundle))
    assert.equal("true", r.shared[1], out)
    assert.equal("1", r.len1[1])
    assert.equal("true", r.still[1])
    assert.equal("1", r.still[2])
    assert.is_true(tonumber(r.system[1]) >= 100, out)   -- the system view reads anew
    assert.equal("false", r.reloaded[1])
    assert.is_true(tonumber(r.reloaded[2]) >= 100)
    assert.equal("true", r.old[1])
  end)

  it("get_system_ca_certificates: PEM of the system's bundle, whatever the override", function()
    local r, out = sub(nil, ([[
      core._set_system_bundles {}
      local pem = tls.get_system_ca_certificates()
      put("type", type(pem))
      local f = assert(io.open(%q, "wb")); f:write(pem); f:close()
      local x = tls.X509Certificate.new()
      put("parse", x:load_from_string(pem), x:get_chain_length())
      tls.set_certificate_bundle_override(%q)
      put("with_override", select(2, tls.get_system_ca_certificates():gsub("BEGIN CERTIFICATE", "")))
      put("len", chain_len())
    ]]):format(H.tmpdir() .. "/system.pem", CA_PATH))
    assert.equal("string", r.type[1], out)
    assert.equal("true", r.parse[1])
    local n = tonumber(r.parse[2])
    assert.is_true(n >= 100, out)
    assert.equal(tostring(n), r.with_override[1])
    assert.equal("1", r.len[1])                     -- clients use the override
  end)

  it("get_system_ca_certificates follows SSL_CERT_FILE", function()
    local r, out = sub({ SSL_CERT_FILE = CA_PATH }, [[
      local pem = tls.get_system_ca_certificates()
      put("n", select(2, pem:gsub("BEGIN CERTIFICATE", "")))
      put("same", pem:find(ld("X509Certificate", "certs/ca.crt"):save_to_string(), 1, true) ~= nil)
    ]])
    assert.equal("1", r.n[1], out)
    assert.equal("true", r.same[1], out)
  end)

  it("in this process too, whatever the environment: PEM with BEGIN CERTIFICATE blocks", function()
    local pem = assert(tls.get_system_ca_certificates())
    assert.is_true(count_pem(pem) >= 1)
    assert.matches("^%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-\n", pem)
    assert.is_string(tls.get_certificate_bundle_source())
  end)
end)

describe("the default CA bundle loads on a worker", function()
  -- A big bundle: the shipped Mozilla one four times over (600 roots, tens
  -- of milliseconds to parse) and our dev CA last.
  local big
  setup(function()
    big = H.write(H.tmpdir() .. "/big.pem", H.read(SHIPPED):rep(4) .. H.read("certs/ca.crt"))
  end)

  it("TLSOptions.client() returns at once; handshakes wait for the load, without blocking", function()
    local r, out = sub({ SSL_CERT_FILE = big }, [[
      local o = assert(tls.TLSOptions.client())
      put("empty", o:get_trusted_ca_chain():get_chain_length())
      put("preload", tls.preload_certificate_bundle())     -- false: loading
      put("trusted", trusts_dev_server(o))
      put("preload_after", tls.preload_certificate_bundle())
      put("len", o:get_trusted_ca_chain():get_chain_length())   -- filled in place
      put("shared", rawequal(o:get_trusted_ca_chain(), tls.TLSOptions.client():get_trusted_ca_chain()))
    ]])
    assert.equal("0", r.empty[1], out)                  -- not loaded by client()
    assert.equal("false", r.preload[1], out)
    assert.equal("true", r.trusted[1], out)
    assert.equal("true", r.preload_after[1], out)
    assert.is_true(tonumber(r.len[1]) >= 400, out)
    assert.equal("true", r.shared[1], out)
  end)

  it("preload_certificate_bundle() starts the load: left alone, it ends on its own", function()
    local r, out = sub({ SSL_CERT_FILE = big }, [[
      put("first", tls.preload_certificate_bundle())       -- false: loading
      core._wait({}, {}, 2)                                -- no call into the load meanwhile
      put("later", tls.preload_certificate_bundle())
    ]])
    assert.equal("false", r.first[1], out)
    assert.equal("true", r.later[1], out)
  end)

  it("the event core steps a tls.connect client once the load ends", function()
    local r, out = sub({ SSL_CERT_FILE = big }, [[
      local srv = assert(tls.listen { port = 0, bind = "127.0.0.1",
        certificate = "certs/server.crt", key = "certs/server.key" })
      srv:on("data_received", function(conn, d) conn:send(d) end)
      local c = tls.connect { host = "localhost", port = srv:get_local_port() }
      local got = ""
      c:on("connection_established", function() c:send("bundle") end)
      c:on("data_received", function(d) got = got .. d end)
      c:on("connection_failed", function(m) put("failed", m) end)
      local t0 = core._now()
      while got ~= "bundle" and core._now() - t0 < 10 do tls.run(0.05) end
      put("got", got)
    ]])
    assert.is_nil(r.failed, out)
    assert.equal("bundle", r.got[1], out)
  end)

  it("a blocking client waits for the load", function()
    local srv = H.s_server("-cert certs/server.crt -key certs/server.key")
    finally(srv.stop)
    local r, out = sub({ SSL_CERT_FILE = big }, ([[
      local tcp = tls.StreamPeerTCP.new()
      assert(tcp:connect_to_host("127.0.0.1", %d))
      local c = tls.StreamPeerTLS.new()
      assert(c:connect_to_stream(tcp, "localhost", tls.TLSOptions.client()))
      c:set_timeout(10)
      put("put", c:put_data("over the default bundle\n"))
      put("verified", c:is_peer_verified())
    ]]):format(srv.port))
    assert.equal("true", r.put[1], out)
    assert.equal("true", r.verified[1], out)
    assert.truthy(srv.wait_output("over the default bundle", 5))
  end)

  it("a load that fails fails the handshakes waiting for it, with its reason", function()
    local bad = H.write(H.tmpdir() .. "/bad.pem",
      "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
    local r, out = sub({ SSL_CERT_FILE = bad }, [[
      core._set_system_bundles {}
      core._set_shipped_bundles {}
      local o = tls.TLSOptions.client()
      put("options", o ~= nil)
      put("trusted", trusts_dev_server(o))
      put("preload", tls.preload_certificate_bundle(true))
    ]])
    assert.equal("true", r.options[1], out)
    assert.equal("false", r.trusted[1], out)
    assert.matches("no CA bundle found", r.trusted[2], 1, true)
    assert.equal("nil", r.preload[1], out)
    assert.equal("ERR_FILE_NOT_FOUND", r.preload[3], out)
  end)

  it("with set_worker_threads(0) it loads inline, in TLSOptions.client()", function()
    local r, out = sub({ SSL_CERT_FILE = big }, [[
      tls.set_worker_threads(0)
      put("preload", tls.preload_certificate_bundle())
      put("trusted", trusts_dev_server())
    ]])
    assert.equal("true", r.preload[1], out)
    assert.equal("true", r.trusted[1], out)
  end)
end)
