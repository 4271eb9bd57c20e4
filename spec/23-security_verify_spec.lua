-- Regression specs for the certificate-verification findings of the
-- security review (issue 9): name constraints (#7), one-label wildcards
-- (#8), names cut short (#11), CA certificates whose extended key usage
-- excludes TLS, and an expired intermediate reported with the leaf's date.
-- The chains are made by the `openssl` command (name constraints and EKU
-- on CAs) or by tlspeer; OpenSSL's own verdict on each chain is checked
-- too, as the reference.
local H = require "helpers"
local tls = H.tls
local TLS = tls.StreamPeerTLS
local CONNECTED, HANDSHAKING = TLS.STATUS_CONNECTED, TLS.STATUS_HANDSHAKING
local ERROR, MISMATCH = TLS.STATUS_ERROR, TLS.STATUS_ERROR_HOSTNAME_MISMATCH

local function cert_from(path) local c = tls.X509Certificate.new(); assert(c:load(path)); return c end
local function key_from(path) local k = tls.CryptoKey.new(); assert(k:load(path)); return k end

-- A TLS handshake over tls.pipe(): our client, trusting `trusted`, with
-- `name`, against our server presenting `chain` (a path or object) and key.
-- Returns the client's status and error.
local function try(trusted, name, chain, key, client_opts)
  local a, b = tls.pipe()
  local client, server = TLS.new(), TLS.new()
  if type(chain) == "string" then chain = cert_from(chain) end
  if type(key) == "string" then key = key_from(key) end
  if type(trusted) == "string" then trusted = cert_from(trusted) end
  assert(server:accept_stream(b, assert(tls.TLSOptions.server(key, chain))))
  local ok, msg, code = client:connect_to_stream(a, name,
    assert(tls.TLSOptions.client(trusted, "", client_opts)))
  if not ok then return nil, msg, code end
  for _ = 1, 100 do
    client:poll(); server:poll()
    if client:get_status() ~= HANDSHAKING then break end
  end
  return client:get_status(), client:get_error()
end

-- The openssl PKI of a spec: files in a temporary folder.
local function pki()
  local dir = H.tmpdir()
  local P = { dir = dir }
  local serial = 1000
  local function path(n) return dir .. "/" .. n end
  local function key(n)
    H.openssl(("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s"):format(H.q(path(n .. ".key"))))
  end
  function P.root(name, ext)
    key(name)
    local conf = path(name .. ".cnf")
    H.write(conf, "[req]\ndistinguished_name=dn\nx509_extensions=v3\n[dn]\n[v3]\n"
               .. "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
               .. "subjectKeyIdentifier=hash\n" .. (ext or ""))
    H.openssl(("req -x509 -new -key %s -out %s -days 3650 -subj %s -config %s")
      :format(H.q(path(name .. ".key")), H.q(path(name .. ".crt")), H.q("/CN=" .. name),
              H.q(conf)))
    return path(name .. ".crt")
  end
  -- Signs `name` (a new key) with `issuer`; ext is the extension text.
  function P.issue(name, issuer, ext, days)
    key(name)
    serial = serial + 1
    H.openssl(("req -new -key %s -out %s -subj %s"):format(H.q(path(name .. ".key")),
      H.q(path(name .. ".csr")), H.q("/CN=" .. name)))
    local e = path(name .. ".ext")
    H.write(e, "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n" .. ext)
    H.openssl(("x509 -req -in %s -CA %s -CAkey %s -set_serial %d -days %d -out %s -extfile %s")
      :format(H.q(path(name .. ".csr")), H.q(path(issuer .. ".crt")), H.q(path(issuer .. ".key")),
              serial, days or 365, H.q(path(name .. ".crt")), H.q(e)))
    return path(name .. ".crt")
  end
  function P.ca(name, issuer, ext)
    return P.issue(name, issuer, "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
      .. (ext or ""), 3650)
  end
  function P.leaf(name, issuer, san, eku)
    return P.issue(name, issuer, (san and ("subjectAltName=" .. san .. "\n") or "")
      .. "extendedKeyUsage=" .. (eku or "serverAuth") .. "\n")
  end
  -- A chain file: the leaf, then the intermediates.
  function P.chain(...)
    local parts = {}
    for _, n in ipairs { ... } do parts[#parts + 1] = H.read(path(n .. ".crt")) end
    local f = path(table.concat({ ... }, "+") .. ".pem")
    H.write(f, table.concat(parts))
    return f
  end
  function P.key(n) return path(n .. ".key") end
  function P.crt(n) return path(n .. ".crt") end
  -- OpenSSL's verdict: ok, its output.
  function P.openssl_verify(root, leaf, untrusted, purpose)
    return H.try_openssl(("verify -CAfile %s %s -purpose %s %s"):format(H.q(P.crt(root)),
      untrusted and ("-untrusted " .. H.q(P.crt(untrusted))) or "", purpose or "sslserver",
      H.q(P.crt(leaf))))
  end
  return P
end

describe("issue 9 #7: name constraints", function()
  teardown(H.cleanup)
  local P

  setup(function()
    P = pki()
    P.root("Root")
    -- Non-critical constraints, which mbedtls parses and ignores.
    P.ca("Limited", "Root", "nameConstraints=permitted;DNS:allowed.test,permitted;IP:127.0.0.0/255.0.0.0,"
      .. "excluded;DNS:bad.allowed.test\n")
    P.leaf("evil.com", "Limited", "DNS:evil.com")
    P.leaf("www.allowed.test", "Limited", "DNS:www.allowed.test")
    P.leaf("allowed.test", "Limited", "DNS:allowed.test")
    P.leaf("bad.allowed.test", "Limited", "DNS:bad.allowed.test")
    P.leaf("x.bad.allowed.test", "Limited", "DNS:x.bad.allowed.test")
    P.leaf("ip-10", "Limited", "IP:10.0.0.1")
    P.leaf("ip-127", "Limited", "IP:127.0.0.1")
    P.leaf("mixed", "Limited", "DNS:www.allowed.test,DNS:evil.com")
    P.leaf("cn-only.evil.com", "Limited", nil)          -- no SAN: the CN is the name
  end)

  local refused = {
    { "evil.com", "evil.com" },
    { "bad.allowed.test", "bad.allowed.test" },          -- excluded
    { "x.bad.allowed.test", "x.bad.allowed.test" },      -- below an excluded subtree
    { "ip-10", "10.0.0.1" },
    { "mixed", "www.allowed.test" },                     -- one name outside is enough
    { "cn-only.evil.com", "cn-only.evil.com" },
  }
  for _, case in ipairs(refused) do
    local leaf, name = case[1], case[2]
    it("refuses a leaf for " .. name .. " under a CA limited to allowed.test (OpenSSL refuses it too)", function()
      local ok, out = P.openssl_verify("Root", leaf, "Limited")
      assert.is_false(ok, "openssl accepted it:\n" .. out)
      assert.matches("subtree", out)
      local status, msg, code = try(P.crt("Root"), name, P.chain(leaf, "Limited"), P.key(leaf))
      assert.equal(ERROR, status, msg)
      assert.equal("ERR_UNAUTHORIZED", code)
      assert.matches("name constraints", msg)
    end)
  end

  for _, case in ipairs { { "www.allowed.test", "www.allowed.test" }, { "allowed.test", "allowed.test" },
                          { "ip-127", "127.0.0.1" } } do
    local leaf, name = case[1], case[2]
    it("accepts a leaf for " .. name .. " inside the permitted subtrees", function()
      local ok, out = P.openssl_verify("Root", leaf, "Limited")
      assert.is_true(ok, out)
      assert.equal(CONNECTED, (try(P.crt("Root"), name, P.chain(leaf, "Limited"), P.key(leaf))))
    end)
  end

  it("applies the constraints of a trusted root too", function()
    local Q = pki()
    Q.root("LimitedRoot", "nameConstraints=permitted;DNS:allowed.test\n")
    Q.leaf("evil.com", "LimitedRoot", "DNS:evil.com")
    Q.leaf("ok.allowed.test", "LimitedRoot", "DNS:ok.allowed.test")
    assert.is_false((Q.openssl_verify("LimitedRoot", "evil.com")))
    local status, msg = try(Q.crt("LimitedRoot"), "evil.com", Q.crt("evil.com"), Q.key("evil.com"))
    assert.equal(ERROR, status)
    assert.matches("name constraints", msg)
    assert.equal(CONNECTED, (try(Q.crt("LimitedRoot"), "ok.allowed.test", Q.crt("ok.allowed.test"),
                                 Q.key("ok.allowed.test"))))
  end)

  it("refuses a chain whose CA marks its name constraints critical (mbedtls cannot read them)", function()
    local Q = pki()
    Q.root("Root")
    Q.ca("Critical", "Root", "nameConstraints=critical,permitted;DNS:allowed.test\n")
    Q.leaf("www.allowed.test", "Critical", "DNS:www.allowed.test")
    local s = H.s_server(("-cert %s -key %s -cert_chain %s"):format(H.q(Q.crt("www.allowed.test")),
      H.q(Q.key("www.allowed.test")), H.q(Q.crt("Critical"))))
    finally(s.stop)
    local tcp = tls.StreamPeerTCP.new()
    assert(tcp:connect_to_host("127.0.0.1", s.port))
    local p = TLS.new()
    assert(p:connect_to_stream(tcp, "www.allowed.test", tls.TLSOptions.client(cert_from(Q.crt("Root")))))
    local status = H.handshake(p, 5)
    assert.equal(ERROR, status)
    local msg = p:get_error()
    io.stderr:write("\n[23] critical name constraints: " .. tostring(msg) .. "\n")
    assert.matches("certificate chain cannot be read", msg)
    assert.equal("ERR_UNAUTHORIZED", select(2, p:get_error()))
  end)
end)

describe("issue 9: CA certificates whose extended key usage excludes TLS", function()
  after_each(H.cleanup)

  it("a client refuses a server chain through an intermediate limited to clientAuth (as OpenSSL does)", function()
    local P = pki()
    P.root("Root")
    P.ca("ClientsOnly", "Root", "extendedKeyUsage=clientAuth\n")
    P.ca("ServersOnly", "Root", "extendedKeyUsage=serverAuth\n")
    P.leaf("a.test", "ClientsOnly", "DNS:a.test")
    P.leaf("b.test", "ServersOnly", "DNS:b.test")
    local ok, out = P.openssl_verify("Root", "a.test", "ClientsOnly")
    assert.is_false(ok, out)
    local status, msg, code = try(P.crt("Root"), "a.test", P.chain("a.test", "ClientsOnly"), P.key("a.test"))
    assert.equal(ERROR, status)
    assert.equal("ERR_UNAUTHORIZED", code)
    assert.matches("CN=ClientsOnly", msg)
    assert.matches("not allowed to issue TLS server certificates", msg)
    assert.is_true((P.openssl_verify("Root", "b.test", "ServersOnly")))
    assert.equal(CONNECTED, (try(P.crt("Root"), "b.test", P.chain("b.test", "ServersOnly"), P.key("b.test"))))
  end)

  it("a server refuses a client chain through an intermediate limited to serverAuth", function()
    local P = pki()
    P.root("Root")
    P.ca("ServersOnly", "Root", "extendedKeyUsage=serverAuth\n")
    P.leaf("client", "ServersOnly", nil, "clientAuth")
    assert.is_false((P.openssl_verify("Root", "client", "ServersOnly", "sslclient")))
    local a, b = tls.pipe()
    local client, server = TLS.new(), TLS.new()
    local crypto = tls.Crypto.new()
    local skey = assert(crypto:generate_ec())
    local scert = assert(crypto:generate_self_signed_certificate(skey, "CN=localhost"))
    assert(server:accept_stream(b, assert(tls.TLSOptions.server(skey, scert,
      { trusted_chain = cert_from(P.crt("Root")), verify = "required" }))))
    assert(client:connect_to_stream(a, "localhost", assert(tls.TLSOptions.client(scert, "",
      { certificate = cert_from(P.chain("client", "ServersOnly")), key = key_from(P.key("client")) }))))
    for _ = 1, 100 do
      client:poll(); server:poll()
      if server:get_status() ~= HANDSHAKING then break end
    end
    assert.equal(ERROR, server:get_status())
    local msg = server:get_error()
    assert.matches("not allowed to issue TLS client certificates", msg)
  end)
end)

describe("issue 9: an expired intermediate is named, with its own date", function()
  it("says which CA expired and when, not the leaf's date", function()
    local crypto = tls.Crypto.new()
    local rkey, ikey, lkey = assert(crypto:generate_ec()), assert(crypto:generate_ec()), assert(crypto:generate_ec())
    local root = assert(crypto:generate_self_signed_certificate(rkey, "CN=Root", "20100101000000",
      "20400101000000", { ca = true }))
    local old = assert(crypto:issue_certificate(ikey, "CN=Old Intermediate", rkey, root,
      "20100101000000", "20200101000000", { ca = true }))
    local leaf = assert(crypto:issue_certificate(lkey, "CN=localhost", ikey, old,
      "20190101000000", "20390101000000"))
    local chain = tls.X509Certificate.new()
    assert(chain:load_from_string(leaf:save_to_string() .. old:save_to_string()))
    local status, msg, code = try(root, "localhost", chain, lkey)
    assert.equal(ERROR, status)
    assert.equal("ERR_UNAUTHORIZED", code)
    assert.matches("CN=Old Intermediate", msg)
    assert.matches("2020%-01%-01", msg)
    assert.not_matches("2039", msg)
  end)
end)

describe("issue 9 #8: a wildcard needs two labels after it", function()
  local crypto = tls.Crypto.new()
  local key = assert(crypto:generate_ec())
  local function with_san(san)
    return assert(crypto:generate_self_signed_certificate(key, "CN=wildcard test", "20200101000000",
      "20400101000000", { san = san }))
  end

  it("'*.com' matches no name (OpenSSL and Python agree)", function()
    local cert = with_san { "*.com" }
    local status, msg = try(cert, "foo.com", cert, key)
    assert.equal(MISMATCH, status, msg)
  end)

  it("'*.example.com' matches one whole label only", function()
    local cert = with_san { "*.example.com" }
    assert.equal(CONNECTED, (try(cert, "a.example.com", cert, key)))
    assert.equal(CONNECTED, (try(cert, "A.EXAMPLE.COM", cert, key)))
    assert.equal(MISMATCH, (try(cert, "a.b.example.com", cert, key)))
    assert.equal(MISMATCH, (try(cert, "example.com", cert, key)))
  end)

  it("'*.com.' (an absolute name) matches nothing either (openssl-made certificate)", function()
    local P = pki()
    P.root("Root")
    P.leaf("wild", "Root", "DNS:*.com.,DNS:*.")
    assert.equal(MISMATCH, (try(P.crt("Root"), "foo.com", P.crt("wild"), P.key("wild"))))
    H.cleanup()
  end)
end)

describe("issue 9 #11: the verified name is never cut short", function()
  local crypto = tls.Crypto.new()
  local key = assert(crypto:generate_ec())
  -- 255 bytes: four labels of 63.
  local long = table.concat({ ("a"):rep(63), ("b"):rep(63), ("c"):rep(63), ("d"):rep(63) }, ".")

  it("a name longer than 253 bytes is refused, not shortened to one the certificate carries", function()
    assert.equal(255, #long)
    local P = pki()
    P.root("Root")
    P.leaf("long", "Root", "DNS:" .. long)
    local ok, msg, code = try(P.crt("Root"), long .. ".evil.example", P.crt("long"), P.key("long"))
    H.cleanup()
    assert.is_nil(ok)
    assert.equal("ERR_INVALID_PARAMETER", code)
    assert.matches("longer than 253 bytes", msg)
  end)

  it("a name with a NUL is refused, not cut at the NUL", function()
    local cert = assert(crypto:generate_self_signed_certificate(key, "CN=localhost", "20200101000000",
      "20400101000000", { san = { "localhost" } }))
    local ok, msg, code = try(cert, "localhost\0.evil.example", cert, key)
    assert.is_nil(ok)
    assert.equal("ERR_INVALID_PARAMETER", code)
    assert.matches("NUL", msg)
    assert.matches("localhost\\x00.evil.example", msg, 1, true)
  end)

  it("CR, LF, spaces and stray brackets are refused as names to verify", function()
    local cert = assert(crypto:generate_self_signed_certificate(key, "CN=localhost"))
    for _, bad in ipairs { "localhost\r\nX: y", "local host", "[localhost]", "[::1]", "l\tcalhost" } do
      local ok, _, code = try(cert, bad, cert, key)
      assert.is_nil(ok, bad)
      assert.equal("ERR_INVALID_PARAMETER", code)
    end
  end)

  it("TLSOptions' common_name_override obeys the same rules", function()
    local cert = assert(crypto:generate_self_signed_certificate(key, "CN=localhost"))
    local ok, msg, code = tls.TLSOptions.client(cert, "localhost\0.evil.example")
    assert.is_nil(ok)
    assert.equal("ERR_INVALID_PARAMETER", code)
    assert.matches("NUL", msg)
    ok, msg, code = tls.TLSOptions.client(cert, ("a"):rep(300))
    assert.is_nil(ok)
    assert.matches("invalid common name override", msg)
  end)
end)
