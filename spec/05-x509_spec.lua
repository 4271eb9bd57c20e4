-- X509Certificate and certificate generation, checked against the real
-- `openssl` command: what we write, openssl reads and verifies; what
-- openssl writes, we read the same way it does.
local H = require "helpers"
local tls = H.tls
local X509 = tls.X509Certificate
local q = H.q

-- `openssl x509 -in path -noout <args>` output.
local function x509(path, args)
  return H.openssl("x509 -in " .. q(path) .. " -noout " .. args)
end

-- The "name=value" lines of openssl's output, as a table.
local function fields(out)
  local t = {}
  for k, v in out:gmatch("([%w%s]-)=([^\n]*)") do
    t[k:match("^%s*(.-)%s*$")] = v
  end
  return t
end

-- Subject/issuer the way we print them: RFC 4514 escaping, certificate
-- order (openssl's RFC2253 without the reversal).
local NAMEOPT = "-nameopt RFC2253,-dn_rev"

-- Checks every getter against openssl for the certificate in `path`.
local function agrees_with_openssl(cert, path)
  local f = fields(x509(path, "-subject -issuer -serial -dates " .. NAMEOPT))
  assert.are.equal(f.subject, cert:get_subject())
  assert.are.equal(f.issuer, cert:get_issuer())
  assert.are.equal(f.serial:lower(), cert:get_serial())
  assert.are.equal(H.openssl_time(f.notBefore), cert:get_not_before())
  assert.are.equal(H.openssl_time(f.notAfter), cert:get_not_after())
  for _, h in ipairs { "sha256", "sha1", "sha512", "md5" } do
    local out = x509(path, "-fingerprint -" .. h)
    local fp = H.uncolon(assert(out:match("Fingerprint=(%S+)")))
    assert.are.equal(fp, cert:get_fingerprint(h))
  end
  local fp = H.uncolon(x509(path, "-fingerprint -sha256"):match("=(%S+)"))
  assert.are.equal(fp, cert:get_fingerprint())
end

-- The subjectAltName entries openssl prints, in our text form.
local function openssl_san(path)
  local ok, out = H.try_openssl("x509 -in " .. q(path)
                                .. " -noout -ext subjectAltName")
  assert(ok, out)
  local list = {}
  for kind, v in out:gmatch("(%u[%w ]-):([^,\n]+)") do
    if kind == "DNS" then
      list[#list + 1] = v
    elseif kind == "IP Address" then
      -- openssl 3.0 prints IPv6 uncompressed: only ::1 appears below.
      list[#list + 1] = v == "0:0:0:0:0:0:0:1" and "::1" or v
    end
  end
  return list
end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

describe("X509Certificate", function()
  local crypto, dir, ec, ec2, ec384

  lazy_setup(function()
    crypto = H.crypto()
    dir = H.tmpdir()
    ec = assert(crypto:generate_ec())
    ec2 = assert(crypto:generate_ec())
    ec384 = assert(crypto:generate_ec("secp384r1"))
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  local function save(cert, name)
    local path = dir .. "/" .. name
    assert.is_true(cert:save(path))
    return path
  end

  describe("generate_self_signed_certificate, as openssl reads it", function()
    it("with Godot's defaults: subject, SAN, validity, serial, leaf", function()
      local cert = assert(crypto:generate_self_signed_certificate(ec))
      local path = save(cert, "default.crt")
      local text = x509(path, "-text")
      assert.matches("Subject: CN = myserver, O = myorganisation, C = IT",
                     text, 1, true)
      assert.matches("Issuer: CN = myserver, O = myorganisation, C = IT",
                     text, 1, true)
      assert.matches("Not Before: Jan  1 00:00:00 2014 GMT", text, 1, true)
      assert.matches("Not After : Jan  1 00:00:00 2034 GMT", text, 1, true)
      assert.matches("DNS:myserver\n", text, 1, true)
      assert.matches("CA:FALSE", text, 1, true)
      assert.matches("Version: 3 (0x2)", text, 1, true)
      assert.matches("ecdsa-with-SHA256", text, 1, true)
      assert.matches("X509v3 Subject Key Identifier", text, 1, true)
      assert.matches("X509v3 Authority Key Identifier", text, 1, true)
      assert.matches("TLS Web Server Authentication, TLS Web Client "
                     .. "Authentication", text, 1, true)
      -- a self-signed leaf has no keyUsage (so openssl treats it as its
      -- own trust anchor)
      assert.is_nil(text:find("X509v3 Key Usage", 1, true))
      assert.is_nil(text:find("Negative", 1, true))
      -- 16 random bytes, positive: the top bit of the first byte is clear
      local serial = fields(x509(path, "-serial")).serial
      assert.are.equal(32, #serial)
      assert.is_true(tonumber(serial:sub(1, 1), 16) < 8)
      assert.are.same({ "myserver" }, cert:get_san())
      assert.is_false(cert:is_ca())
      assert.are.equal(1, cert:get_chain_length())
      assert.are.equal("20140101000000", cert:get_not_before())
      assert.are.equal("20340101000000", cert:get_not_after())
      assert.are.equal("CN=myserver,O=myorganisation,C=IT", cert:get_subject())
      assert.are.equal(cert:get_subject(), cert:get_issuer())
    end)

    it("has getters that agree with openssl x509", function()
      local cert = assert(crypto:generate_self_signed_certificate(ec))
      agrees_with_openssl(cert, save(cert, "getters.crt"))
    end)

    it("gives each certificate a fresh random serial", function()
      local a = crypto:generate_self_signed_certificate(ec)
      local b = crypto:generate_self_signed_certificate(ec)
      assert.are_not.equal(a:get_serial(), b:get_serial())
      assert.are_not.equal(a:get_fingerprint(), b:get_fingerprint())
    end)

    it("puts an IP literal CN into the SAN as an iPAddress", function()
      local cert = assert(crypto:generate_self_signed_certificate(ec,
        "CN=127.0.0.1", "20240101000000", "20340101000000"))
      local path = save(cert, "ip.crt")
      local text = x509(path, "-text")
      assert.matches("IP Address:127.0.0.1", text, 1, true)
      assert.is_nil(text:find("DNS:", 1, true))
      assert.are.same({ "127.0.0.1" }, openssl_san(path))
      assert.are.same({ "127.0.0.1" }, cert:get_san())
      assert.are.equal("CN=127.0.0.1", cert:get_subject())
    end)

    it("adds opts.san (DNS, IPv4, IPv6) after the CN, without duplicates",
       function()
      local cert = assert(crypto:generate_self_signed_certificate(ec,
        "CN=example.test,O=Spec", nil, nil, { san = {
          "www.example.test", "10.1.2.3", "::1", "example.test",
          "*.example.test", "10.1.2.3" } }))
      local want = { "example.test", "www.example.test", "10.1.2.3", "::1",
                     "*.example.test" }
      local path = save(cert, "san.crt")
      assert.are.same(want, openssl_san(path))
      assert.are.same(want, cert:get_san())
      local text = x509(path, "-text")
      assert.matches("DNS:example.test, DNS:www.example.test, IP Address:"
                     .. "10.1.2.3, IP Address:0:0:0:0:0:0:0:1, "
                     .. "DNS:*.example.test\n", text, 1, true)
      -- the defaults of the validity still apply
      assert.are.equal("20140101000000", cert:get_not_before())
    end)

    it("makes a CA with opts.ca: critical CA:TRUE and keyCertSign", function()
      local cert = assert(crypto:generate_self_signed_certificate(ec,
        "CN=tlspeer dev CA,O=tlspeer", "20240101000000", "20440101000000",
        { ca = true }))
      local path = save(cert, "ca-only.crt")
      local text = x509(path, "-text")
      assert.matches("X509v3 Basic Constraints: critical\n%s+CA:TRUE\n", text)
      assert.matches("X509v3 Key Usage: critical\n%s+Digital Signature, "
                     .. "Certificate Sign, CRL Sign\n", text)
      assert.is_nil(text:find("Extended Key Usage", 1, true))
      -- "tlspeer dev CA" is not a host name: no SAN at all
      assert.is_nil(text:find("Subject Alternative Name", 1, true))
      assert.are.same({}, cert:get_san())
      assert.is_true(cert:is_ca())
      -- openssl accepts it as its own trust anchor
      local out = H.openssl("verify -x509_strict -CAfile " .. q(path) .. " "
                            .. q(path))
      assert.matches(": OK", out, 1, true)
    end)

    it("writes dates from 2050 on as GeneralizedTime, leap days included",
       function()
      local cert = assert(crypto:generate_self_signed_certificate(ec,
        "CN=future.test", "20480229123456", "20991231235959"))
      local path = save(cert, "future.crt")
      local f = fields(x509(path, "-dates"))
      assert.are.equal("Feb 29 12:34:56 2048 GMT", f.notBefore)
      assert.are.equal("Dec 31 23:59:59 2099 GMT", f.notAfter)
      assert.are.equal("20480229123456", cert:get_not_before())
      assert.are.equal("20991231235959", cert:get_not_after())
      agrees_with_openssl(cert, path)
    end)

    it("signs with the hash that fits the key (P-384: SHA-384)", function()
      local cert = assert(crypto:generate_self_signed_certificate(ec384,
        "CN=p384.test"))
      local text = x509(save(cert, "p384.crt"), "-text")
      assert.matches("Signature Algorithm: ecdsa-with-SHA384", text, 1, true)
      assert.matches("NIST CURVE: P-384", text, 1, true)
    end)

    it("survives a save/load round trip byte for byte", function()
      local cert = assert(crypto:generate_self_signed_certificate(ec))
      local path = save(cert, "round.crt")
      local again = X509.new()
      assert.is_true(again:load(path))
      assert.are.equal(cert:save_to_string(), again:save_to_string())
      assert.are.equal(cert:save_to_string(), H.read(path))
      assert.are.equal(H.openssl("x509 -in " .. q(path)), H.read(path))
      assert.are.equal("644", H.mode(path))
    end)

    it("rejects invalid dates, names and SAN entries", function()
      local bad = {
        { "CN=x", "2014", "20340101000000" },
        { "CN=x", "20141301000000", "20340101000000" },
        { "CN=x", "20230229000000", "20340101000000" },
        { "CN=x", "20140101240000", "20340101000000" },
        { "CN=x", "2014010100000a", "20340101000000" },
        { "CN=x", "20340101000000", "20340101000000" },
        { "CN=x", "20340101000000", "20140101000000" },
        { "nonsense", nil, nil },
        { "XX=foo", nil, nil },
      }
      for _, b in ipairs(bad) do
        local cert, msg, code = crypto:generate_self_signed_certificate(ec,
          b[1], b[2], b[3])
        assert.is_nil(cert)
        assert.is_string(msg)
        assert.are.equal("ERR_INVALID_PARAMETER", code)
      end
      for _, entry in ipairs { "bad name!", "", "a..b.", ".x", "a\0b" } do
        local cert, msg, code = crypto:generate_self_signed_certificate(ec,
          "CN=x", nil, nil, { san = { "ok.test", entry } })
        assert.is_nil(cert, entry)
        assert.matches("opts.san entry 2", msg, 1, true)
        assert.are.equal("ERR_INVALID_PARAMETER", code)
      end
      local cert, _, code = crypto:generate_self_signed_certificate(
        tls.CryptoKey.new())
      assert.is_nil(cert)
      assert.are.equal("ERR_INVALID_PARAMETER", code)
      local pub = crypto:generate_self_signed_certificate(ec):get_public_key()
      cert, _, code = crypto:generate_self_signed_certificate(pub)
      assert.is_nil(cert)
      assert.are.equal("ERR_INVALID_PARAMETER", code)
    end)

    it("raises on options of the wrong type", function()
      local function gen(opts)
        return crypto:generate_self_signed_certificate(ec, "CN=x", nil, nil,
                                                        opts)
      end
      assert.has_error(function() gen { san = "x" } end)
      assert.has_error(function() gen { san = { 1 } } end)
      assert.has_error(function() gen { san = { {} } } end)
      assert.has_error(function() gen { ca = 1 } end)
      assert.has_error(function() gen { ca = "yes" } end)
      assert.has_error(function() gen "ca" end)
      assert.has_error(function() gen(true) end)
      assert.is_not_nil(gen {})
    end)
  end)

  describe("a dev CA made with issue_certificate", function()
    local ca, server, client, rsa_leaf, inter, inter_leaf, other_leaf
    local ca_path, server_path, client_path, inter_path, inter_leaf_path
    local rsa

    lazy_setup(function()
      ca = assert(crypto:generate_self_signed_certificate(ec,
        "CN=tlspeer dev CA,O=tlspeer,C=IT", "20240101000000",
        "20440101000000", { ca = true }))
      server = assert(crypto:issue_certificate(ec2, "CN=localhost,O=tlspeer",
        ec, ca, "20240101000000", "20340101000000",
        { san = { "localhost", "127.0.0.1", "::1" } }))
      client = assert(crypto:issue_certificate(ec384, "CN=client one", ec, ca,
        "20240101000000", "20340101000000", { client = true }))
      inter = assert(crypto:issue_certificate(ec384, "CN=tlspeer intermediate",
        ec, ca, "20240101000000", "20440101000000", { ca = true }))
      inter_leaf = assert(crypto:issue_certificate(ec2, "CN=deep.test",
        ec384, inter, "20240101000000", "20340101000000"))
      local other_ca = assert(crypto:generate_self_signed_certificate(ec2,
        "CN=tlspeer dev CA,O=tlspeer,C=IT", "20240101000000",
        "20440101000000", { ca = true }))
      other_leaf = assert(crypto:issue_certificate(ec384, "CN=other.test",
        ec2, other_ca, "20240101000000", "20340101000000"))
      ca_path = save(ca, "ca.crt")
      server_path = save(server, "server.crt")
      client_path = save(client, "client.crt")
      inter_path = save(inter, "inter.crt")
      inter_leaf_path = save(inter_leaf, "deep.crt")
    end)

    local function verify(args)
      return H.try_openssl("verify " .. args)
    end

    it("issues a server certificate openssl verifies, strictly too", function()
      local ok, out = verify("-CAfile " .. q(ca_path) .. " " .. q(server_path))
      assert.is_true(ok, out)
      assert.matches("server.crt: OK", out, 1, true)
      ok, out = verify("-x509_strict -CAfile " .. q(ca_path) .. " "
                       .. q(server_path))
      assert.is_true(ok, out)
      ok, out = verify("-x509_strict -purpose sslserver -CAfile "
                       .. q(ca_path) .. " " .. q(server_path))
      assert.is_true(ok, out)
      ok, out = verify("-purpose sslserver -verify_hostname localhost "
                       .. "-verify_ip 127.0.0.1 -CAfile " .. q(ca_path) .. " "
                       .. q(server_path))
      assert.is_true(ok, out)
      ok, out = verify("-verify_ip ::1 -CAfile " .. q(ca_path) .. " "
                       .. q(server_path))
      assert.is_true(ok, out)
      -- and a name it does not carry is refused
      ok, out = verify("-verify_hostname example.com -CAfile " .. q(ca_path)
                       .. " " .. q(server_path))
      assert.is_false(ok, out)
    end)

    it("writes the extensions of a server leaf", function()
      local text = x509(server_path, "-text")
      assert.matches("Issuer: CN = tlspeer dev CA, O = tlspeer, C = IT",
                     text, 1, true)
      assert.matches("Subject: CN = localhost, O = tlspeer", text, 1, true)
      assert.matches("X509v3 Key Usage: critical\n%s+Digital Signature\n",
                     text)
      assert.matches("Extended Key Usage: \n%s+TLS Web Server "
                     .. "Authentication\n", text)
      assert.matches("CA:FALSE", text, 1, true)
      assert.are.same({ "localhost", "127.0.0.1", "::1" },
                      openssl_san(server_path))
      assert.are.same({ "localhost", "127.0.0.1", "::1" }, server:get_san())
      -- the AKI names the CA's SKI
      local ca_text = x509(ca_path, "-text")
      local ski = ca_text:match("Subject Key Identifier: \n%s+([%x:]+)")
      local aki = text:match("Authority Key Identifier: \n%s+([%x:]+)")
      assert.is_string(ski)
      assert.are.equal(ski, aki)
      assert.are.equal(ca:get_subject(), server:get_issuer())
      assert.is_false(server:is_ca())
      agrees_with_openssl(server, server_path)
    end)

    it("issues a client certificate for sslclient, not for sslserver",
       function()
      local ok, out = verify("-x509_strict -purpose sslclient -CAfile "
                             .. q(ca_path) .. " " .. q(client_path))
      assert.is_true(ok, out)
      ok, out = verify("-purpose sslserver -CAfile " .. q(ca_path) .. " "
                       .. q(client_path))
      assert.is_false(ok, out)
      assert.matches("unsuitable certificate purpose", out, 1, true)
      local text = x509(client_path, "-text")
      assert.matches("Extended Key Usage: \n%s+TLS Web Client "
                     .. "Authentication\n", text)
      -- "client one" is not a host name: no SAN
      assert.is_nil(text:find("Subject Alternative Name", 1, true))
      -- the server certificate, for its part, is no client certificate
      ok, out = verify("-purpose sslclient -CAfile " .. q(ca_path) .. " "
                       .. q(server_path))
      assert.is_false(ok, out)
    end)

    it("issues RSA leaves with keyEncipherment and sha256WithRSA", function()
      rsa = rsa or assert(crypto:generate_rsa(2048))
      local rsa_ca = assert(crypto:generate_self_signed_certificate(rsa,
        "CN=RSA root", "20240101000000", "20440101000000", { ca = true }))
      rsa_leaf = assert(crypto:issue_certificate(rsa, "CN=rsa.test", rsa,
        rsa_ca, "20240101000000", "20340101000000"))
      local leaf_path = save(rsa_leaf, "rsa-leaf.crt")
      local root_path = save(rsa_ca, "rsa-root.crt")
      local text = x509(leaf_path, "-text")
      assert.matches("X509v3 Key Usage: critical\n%s+Digital Signature, Key "
                     .. "Encipherment\n", text)
      assert.matches("Signature Algorithm: sha256WithRSAEncryption", text, 1,
                     true)
      local ok, out = verify("-x509_strict -purpose sslserver -CAfile "
                             .. q(root_path) .. " " .. q(leaf_path))
      assert.is_true(ok, out)
      -- an EC leaf under the RSA CA is signed with RSA too
      local mixed = assert(crypto:issue_certificate(ec2, "CN=mixed.test", rsa,
        rsa_ca, "20240101000000", "20340101000000"))
      local mixed_path = save(mixed, "mixed.crt")
      assert.matches("sha256WithRSAEncryption", x509(mixed_path, "-text"), 1,
                     true)
      ok, out = verify("-CAfile " .. q(root_path) .. " " .. q(mixed_path))
      assert.is_true(ok, out)
    end)

    it("makes intermediate CAs openssl chains through", function()
      assert.is_true(inter:is_ca())
      assert.are.equal("CN=tlspeer intermediate", inter_leaf:get_issuer())
      local ok, out = verify("-x509_strict -CAfile " .. q(ca_path)
                             .. " -untrusted " .. q(inter_path) .. " "
                             .. q(inter_leaf_path))
      assert.is_true(ok, out)
      assert.matches("deep.crt: OK", out, 1, true)
      -- without the intermediate there is no path
      ok, out = verify("-CAfile " .. q(ca_path) .. " " .. q(inter_leaf_path))
      assert.is_false(ok, out)
      -- issued by a P-384 key: signed with SHA-384
      assert.matches("ecdsa-with-SHA384", x509(inter_leaf_path, "-text"), 1,
                     true)
    end)

    it("refuses a certificate issued by another CA of the same name",
       function()
      local path = save(other_leaf, "other.crt")
      local ok, out = verify("-CAfile " .. q(ca_path) .. " " .. q(path))
      assert.is_false(ok, out)
      assert.matches("error", out)
    end)

    it("issues under a CA that openssl made, with a comma in its name",
       function()
      local key_path, crt_path = dir .. "/ossl-ca.key", dir .. "/ossl-ca.crt"
      H.openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
        .. "-nodes -keyout " .. q(key_path) .. " -out " .. q(crt_path)
        .. " -days 30 -subj " .. q("/C=IT/O=Acme, Inc./OU=R\\+D/CN=Root=1")
        .. " -addext basicConstraints=critical,CA:TRUE"
        .. " -addext keyUsage=critical,keyCertSign,cRLSign")
      local key = tls.CryptoKey.new()
      assert.is_true(key:load(key_path))
      local oca = X509.new()
      assert.is_true(oca:load(crt_path))
      assert.is_true(oca:is_ca())
      assert.are.equal("C=IT,O=Acme\\, Inc.,OU=R\\+D,CN=Root\\=1",
                       oca:get_subject())
      local leaf = assert(crypto:issue_certificate(ec2, "CN=leaf.test", key,
        oca, "20240101000000", "20340101000000"))
      assert.are.equal(oca:get_subject(), leaf:get_issuer())
      local leaf_path = save(leaf, "ossl-leaf.crt")
      local ok, out = verify("-x509_strict -purpose sslserver -CAfile "
                             .. q(crt_path) .. " " .. q(leaf_path))
      assert.is_true(ok, out)
    end)

    it("regression: a name without attr=value gave an empty subject (2.28)",
       function()
      -- mbedtls 2.28 parses "bogus" and "" into an empty name: the issued
      -- certificate had no subject, the self-signed one failed as FAILED
      for _, name in ipairs { "bogus", "", "myserver" } do
        local cert, msg, code = crypto:issue_certificate(ec384, name, ec, ca,
          "20240101000000", "20340101000000")
        assert.is_nil(cert, name)
        assert.matches("subject name", msg, 1, true)
        assert.are.equal("ERR_INVALID_PARAMETER", code)
        cert, msg, code = crypto:generate_self_signed_certificate(ec, name)
        assert.is_nil(cert, name)
        assert.matches("subject name", msg, 1, true)
        assert.are.equal("ERR_INVALID_PARAMETER", code)
      end
    end)

    it("regression: a CA named '#...' or with a backslash could not issue "
       .. "(3.6)", function()
      local function openssl_ca(subj, name)
        local key_path = dir .. "/" .. name .. ".key"
        local crt_path = dir .. "/" .. name .. ".crt"
        H.openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
          .. "-nodes -keyout " .. q(key_path) .. " -out " .. q(crt_path)
          .. " -days 30 -subj " .. q(subj)
          .. " -addext basicConstraints=critical,CA:TRUE"
          .. " -addext keyUsage=critical,keyCertSign,cRLSign")
        local key, cert = tls.CryptoKey.new(), X509.new()
        assert.is_true(key:load(key_path))
        assert.is_true(cert:load(crt_path))
        return key, cert, crt_path
      end
      local key, cert, crt_path = openssl_ca("/O=x/CN=#1 Root", "hash-ca")
      assert.are.equal("O=x,CN=\\#1 Root", cert:get_subject())
      local leaf = assert(crypto:issue_certificate(ec2, "CN=leaf.test", key,
        cert, "20240101000000", "20340101000000"))
      assert.are.equal(cert:get_subject(), leaf:get_issuer())
      local ok, out = verify("-CAfile " .. q(crt_path) .. " "
                             .. q(save(leaf, "hash-leaf.crt")))
      assert.is_true(ok, out)

      key, cert, crt_path = openssl_ca("/CN=a\\\\b", "bs-ca")
      assert.are.equal("CN=a\\\\b", cert:get_subject())
      local msg, code
      leaf, msg, code = crypto:issue_certificate(ec2, "CN=leaf.test", key,
        cert, "20240101000000", "20340101000000")
      if tls.mbedtls_version:match("^2%.") then
        -- 2.28's name parser has no way to write a backslash
        assert.is_nil(leaf)
        assert.matches("issuer name", msg, 1, true)
        assert.are.equal("ERR_INVALID_PARAMETER", code)
      else
        assert.is_not_nil(leaf, msg)
        assert.are.equal(cert:get_subject(), leaf:get_issuer())
        ok, out = verify("-CAfile " .. q(crt_path) .. " "
                         .. q(save(leaf, "bs-leaf.crt")))
        assert.is_true(ok, out)
      end
    end)

    it("issues a certificate for a public-only subject key", function()
      local pub = server:get_public_key()
      assert.is_true(pub:is_public_only())
      local again = assert(crypto:issue_certificate(pub, "CN=again.test", ec,
        ca, "20240101000000", "20340101000000"))
      local path = save(again, "again.crt")
      local ok, out = verify("-CAfile " .. q(ca_path) .. " " .. q(path))
      assert.is_true(ok, out)
      assert.are.equal(server:get_public_key():save_to_string(true),
                       again:get_public_key():save_to_string(true))
    end)

    it("refuses a non-CA issuer, a wrong or public-only issuer key", function()
      local function issue(skey, ikey, icert, nb, na, opts)
        return crypto:issue_certificate(skey, "CN=x.test", ikey, icert,
          nb or "20240101000000", na or "20340101000000", opts)
      end
      local cases = {
        { "not a CA", issue(ec384, ec2, server) },
        { "does not match", issue(ec384, ec2, ca) },
        { "public only", issue(ec384, ca:get_public_key(), ca) },
        { "empty", issue(tls.CryptoKey.new(), ec, ca) },
        { "empty", issue(ec384, tls.CryptoKey.new(), ca) },
        { "empty", issue(ec384, ec, X509.new()) },
        { "not_before", issue(ec384, ec, ca, "20241301000000") },
        { "not_after", issue(ec384, ec, ca, nil, "2034") },
        { "must come after", issue(ec384, ec, ca, "20340101000000",
                                   "20240101000000") },
        { "opts.san", issue(ec384, ec, ca, nil, nil, { san = { "" } }) },
        { "opts.san", issue(ec384, ec, ca, nil, nil,
                            { san = { "bad name!" } }) },
      }
      for _, c in ipairs(cases) do
        local want, cert, msg, code = c[1], c[2], c[3], c[4]
        assert.is_nil(cert, want)
        assert.matches(want, msg, 1, true)
        assert.are.equal("ERR_INVALID_PARAMETER", code)
      end
      local cert, msg, code = crypto:issue_certificate(ec384, "bogus", ec, ca,
        "20240101000000", "20340101000000")
      assert.is_nil(cert)
      assert.matches("subject name", msg, 1, true)
      assert.are.equal("ERR_INVALID_PARAMETER", code)
      assert.has_error(function()
        issue(ec384, ec, ca, nil, nil, { client = "yes" })
      end)
      assert.has_error(function()
        issue(ec384, ec, ca, nil, nil, { san = "x.test" })
      end)
    end)
  end)

  describe("loading what openssl writes", function()
    local oss_pem, oss_der, oss_key, chain_paths
    local SUBJ = "/C=IT/O=Acme, Inc./OU=R\\+D/CN=Test \"CA\" <x>;y #1 "

    lazy_setup(function()
      oss_key = dir .. "/oss.key"
      oss_pem = dir .. "/oss.pem"
      oss_der = dir .. "/oss.der"
      H.openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
        .. "-nodes -keyout " .. q(oss_key) .. " -out " .. q(oss_pem)
        .. " -days 30 -subj " .. q(SUBJ)
        .. " -addext subjectAltName=DNS:a.test,IP:192.0.2.7,DNS:b.test"
        .. " -addext basicConstraints=critical,CA:TRUE")
      H.openssl("x509 -in " .. q(oss_pem) .. " -outform DER -out "
                .. q(oss_der))
      -- a chain of three, each made by openssl
      chain_paths = {}
      local prev_key, prev_crt
      for i, name in ipairs { "root", "mid", "leaf" } do
        local key, crt = dir .. "/c-" .. name .. ".key",
                         dir .. "/c-" .. name .. ".crt"
        local ext = i < 3 and " -addext basicConstraints=critical,CA:TRUE"
                        or ""
        if not prev_key then
          H.openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
            .. "-nodes -keyout " .. q(key) .. " -out " .. q(crt)
            .. " -days 30 -subj /CN=chain-" .. name .. ext)
        else
          H.openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
            .. "-nodes -keyout " .. q(key) .. " -out " .. q(crt)
            .. " -days 30 -subj /CN=chain-" .. name .. ext
            .. " -CA " .. q(prev_crt) .. " -CAkey " .. q(prev_key))
        end
        prev_key, prev_crt = key, crt
        table.insert(chain_paths, 1, crt)      -- leaf first
      end
    end)

    it("reads PEM with getters that match openssl, special characters too",
       function()
      local cert = X509.new()
      assert.is_true(cert:load(oss_pem))
      agrees_with_openssl(cert, oss_pem)
      assert.are.equal("C=IT,O=Acme\\, Inc.,OU=R\\+D,CN=Test \\\"CA\\\" "
                       .. "\\<x\\>\\;y #1\\ ", cert:get_subject())
      assert.are.same({ "a.test", "192.0.2.7", "b.test" }, cert:get_san())
      assert.are.same(openssl_san(oss_pem), cert:get_san())
      assert.is_true(cert:is_ca())
      assert.are.equal(1, cert:get_chain_length())
      assert.are.equal(H.read(oss_pem), cert:save_to_string())
    end)

    it("reads DER, from a file and from a string", function()
      local a, b, c = X509.new(), X509.new(), X509.new()
      assert.is_true(a:load(oss_der))
      assert.is_true(b:load_from_string(H.read(oss_der)))
      assert.is_true(c:load_from_string(H.read(oss_pem)))
      for _, cert in ipairs { a, b, c } do
        agrees_with_openssl(cert, oss_pem)
        assert.are.equal(H.read(oss_pem), cert:save_to_string())
      end
    end)

    it("gives the public key openssl x509 -pubkey prints", function()
      local cert = X509.new()
      assert.is_true(cert:load(oss_pem))
      local pub = assert(cert:get_public_key())
      assert.is_true(pub:is_public_only())
      assert.are.equal("ec", pub:get_type())
      assert.are.equal(256, pub:get_bits())
      assert.are.equal(x509(oss_pem, "-pubkey"), pub:save_to_string(true))
      assert.are.equal(H.openssl("pkey -in " .. q(oss_key) .. " -pubout"),
                       pub:save_to_string(true))
      -- a public-only key cannot be saved as a private one
      local s, _, code = pub:save_to_string()
      assert.is_nil(s)
      assert.are.equal("ERR_INVALID_PARAMETER", code)
    end)

    it("gives the public key of an RSA certificate of ours", function()
      local rsa = assert(crypto:generate_rsa(1024))
      local cert = assert(crypto:generate_self_signed_certificate(rsa))
      local path = save(cert, "rsa1024.crt")
      local pub = cert:get_public_key()
      assert.are.equal("rsa", pub:get_type())
      assert.are.equal(1024, pub:get_bits())
      assert.are.equal(x509(path, "-pubkey"), pub:save_to_string(true))
      assert.are.equal(rsa:save_to_string(true), pub:save_to_string(true))
    end)

    it("loads a chain of three and saves all three, in order", function()
      local chain_file = dir .. "/chain-in.pem"
      local parts = {}
      for i, p in ipairs(chain_paths) do parts[i] = H.read(p) end
      H.write(chain_file, table.concat(parts))
      local cert = X509.new()
      assert.is_true(cert:load(chain_file))
      assert.are.equal(3, cert:get_chain_length())
      assert.are.equal("CN=chain-leaf", cert:get_subject())
      assert.are.equal("CN=chain-mid", cert:get_issuer())
      assert.matches("chain of 3", tostring(cert), 1, true)
      local s = cert:save_to_string()
      assert.are.equal(3, count(s, "%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-"))
      assert.are.equal(table.concat(parts), s)
      -- three distinct certificates, not the leaf three times
      local blocks = {}
      for b in s:gmatch("%-%-%-%-%-BEGIN CERTIFICATE.-END CERTIFICATE%-%-%-%-%-") do
        assert.is_nil(blocks[b])
        blocks[b] = true
      end
      local out_path = dir .. "/chain-out.pem"
      assert.is_true(cert:save(out_path))
      assert.are.equal(s, H.read(out_path))
      local printed = H.openssl("crl2pkcs7 -nocrl -certfile " .. q(out_path)
                                .. " | openssl pkcs7 -print_certs -noout")
      local subjects = {}
      for subj in printed:gmatch("subject=([^\n]+)") do
        subjects[#subjects + 1] = subj
      end
      assert.are.same({ "CN = chain-leaf", "CN = chain-mid",
                        "CN = chain-root" }, subjects)
      assert.matches("Total found: 3",
        H.openssl("storeutl -noout -certs " .. q(out_path)), 1, true)
      -- and the saved chain is a valid path for openssl
      local ok, out = H.try_openssl("verify -CAfile " .. q(chain_paths[3])
        .. " -untrusted " .. q(out_path) .. " " .. q(chain_paths[1]))
      assert.is_true(ok, out)
      -- load_from_string reads the same chain
      local again = X509.new()
      assert.is_true(again:load_from_string(s))
      assert.are.equal(3, again:get_chain_length())
      assert.are.equal(s, again:save_to_string())
    end)

    it("ignores text and other PEM blocks around the certificates", function()
      local text = "Bag Attributes\n  friendlyName: x\n" .. H.read(oss_pem)
        .. H.read(oss_key) .. "trailing words\n" .. H.read(chain_paths[1])
      local cert = X509.new()
      assert.is_true(cert:load_from_string(text))
      assert.are.equal(2, cert:get_chain_length())
      assert.are.equal(H.read(oss_pem) .. H.read(chain_paths[1]),
                       cert:save_to_string())
    end)
  end)

  describe("bad input", function()
    local good_pem, good_der, key_pem, chain3

    lazy_setup(function()
      local a = assert(crypto:generate_self_signed_certificate(ec,
        "CN=first.test"))
      local b = assert(crypto:generate_self_signed_certificate(ec2,
        "CN=second.test"))
      local c = assert(crypto:generate_self_signed_certificate(ec384,
        "CN=third.test"))
      good_pem = a:save_to_string()
      local path = save(a, "good.pem")
      good_der = H.openssl("x509 -in " .. q(path) .. " -outform DER")
      key_pem = ec:save_to_string()
      chain3 = good_pem .. b:save_to_string() .. c:save_to_string()
    end)

    -- A certificate holding `good_pem`'s content, to check it is kept.
    local function loaded()
      local cert = X509.new()
      assert.is_true(cert:load_from_string(good_pem))
      return cert
    end

    local function rejects(cert, data, code)
      local ok, msg, c = cert:load_from_string(data)
      assert.is_nil(ok)
      assert.is_string(msg)
      assert.are.equal(code or "ERR_INVALID_DATA", c)
      return msg
    end

    local function truncated_last(chain)
      -- cut the last certificate in the middle of its base64
      local last = assert(chain:find("-----BEGIN CERTIFICATE-----",
                                     #good_pem + 10, true))
      return chain:sub(1, last + 200)
    end

    it("rejects empty strings, garbage and key PEM, keeping the old content",
       function()
      local cert = loaded()
      local before = cert:get_fingerprint()
      assert.matches("empty", rejects(cert, ""))
      rejects(cert, "garbage, not a certificate\n")
      rejects(cert, H.bytes(600, 7))
      rejects(cert, "\0\0\0\0")
      rejects(cert, key_pem)
      rejects(cert, (good_pem:gsub("CERTIFICATE", "PUBLIC KEY")))
      rejects(cert, (good_pem:gsub("CERTIFICATE", "TRUSTED CERTIFICATE")))
      assert.are.equal(before, cert:get_fingerprint())
      assert.are.equal(1, cert:get_chain_length())
      assert.are.equal(good_pem, cert:save_to_string())
    end)

    it("rejects truncated and corrupt PEM and DER", function()
      local cert = loaded()
      rejects(cert, good_pem:sub(1, math.floor(#good_pem / 2)))
      rejects(cert, good_pem:sub(1, #good_pem - 30))        -- no END line
      rejects(cert, "-----BEGIN CERTIFICATE-----\n")
      rejects(cert, good_der:sub(1, #good_der - 1))
      rejects(cert, good_der:sub(1, 40))
      -- one base64 character changed inside the signature
      local bad = good_pem:sub(1, 300) .. (good_pem:sub(301, 301) == "A"
        and "B" or "A") .. good_pem:sub(302)
      local ok = cert:load_from_string(bad)
      -- a flipped byte may still parse (it only breaks the signature), but
      -- then it must be a different certificate
      if ok then
        assert.are_not.equal(good_pem, cert:save_to_string())
        cert = loaded()
      end
      rejects(cert, (good_pem:gsub("MII", "!!!", 1)))
      assert.are.equal(good_pem, cert:save_to_string())
    end)

    it("rejects a chain whose last certificate is truncated, all or nothing",
       function()
      local cert = X509.new()
      assert.is_true(cert:load_from_string(chain3))
      assert.are.equal(3, cert:get_chain_length())
      local other = loaded()
      local cut = truncated_last(chain3)
      local msg = rejects(other, cut)
      assert.matches("truncated or corrupt", msg, 1, true)
      assert.are.equal(1, other:get_chain_length())
      assert.are.equal(good_pem, other:save_to_string())
      -- with its END line cut off only
      rejects(other, chain3:sub(1, #chain3 - 27))
      -- the middle one corrupt
      local second = chain3:find("-----BEGIN CERTIFICATE-----", 10, true)
      local mid = chain3:sub(1, second + 60) .. "@@@@"
                  .. chain3:sub(second + 65)
      rejects(other, mid)
      assert.are.equal(good_pem, other:save_to_string())
      -- from a file: ERR_FILE_CORRUPT, naming the file
      local path = H.write(dir .. "/cut-chain.pem", cut)
      local ok, fmsg, code = other:load(path)
      assert.is_nil(ok)
      assert.matches(path, fmsg, 1, true)
      assert.are.equal("ERR_FILE_CORRUPT", code)
      assert.are.equal(good_pem, other:save_to_string())
    end)

    it("reports file errors by name", function()
      local cert = loaded()
      local ok, msg, code = cert:load(dir .. "/missing.pem")
      assert.is_nil(ok)
      assert.matches("missing.pem", msg, 1, true)
      assert.are.equal("ERR_FILE_NOT_FOUND", code)
      ok, _, code = cert:load(dir .. "/missing/dir.pem")
      assert.is_nil(ok)
      assert.are.equal("ERR_FILE_NOT_FOUND", code)
      ok, msg, code = cert:load(dir)
      assert.is_nil(ok)
      assert.matches("directory", msg, 1, true)
      assert.are.equal("ERR_FILE_CANT_OPEN", code)
      ok, msg, code = cert:load(H.write(dir .. "/empty.pem", ""))
      assert.is_nil(ok)
      assert.matches("empty", msg, 1, true)
      assert.are.equal("ERR_FILE_CORRUPT", code)
      ok, _, code = cert:load(H.write(dir .. "/key.pem", key_pem))
      assert.is_nil(ok)
      assert.are.equal("ERR_FILE_CORRUPT", code)
      assert.are.equal(good_pem, cert:save_to_string())
    end)

    it("reports unwritable save targets and leaves no file behind", function()
      local cert = loaded()
      local sub = dir .. "/target-dir"
      assert.is_true(H.execute("mkdir " .. q(sub)))
      local ok, msg, code = cert:save(sub)
      assert.is_nil(ok)
      assert.matches("target%-dir", msg)
      assert.are.equal("ERR_FILE_CANT_WRITE", code)
      ok, _, code = cert:save(dir .. "/no/such/dir/x.pem")
      assert.is_nil(ok)
      assert.are.equal("ERR_FILE_CANT_WRITE", code)
      local _, listing = H.run("ls -A " .. q(dir))
      assert.is_nil(listing:find("tmp", 1, true), listing)
      local _, inside = H.run("ls -A " .. q(sub))
      assert.are.equal("", inside)
    end)

    it("answers ERR_UNCONFIGURED from an empty certificate", function()
      local cert = X509.new()
      local path = dir .. "/never.pem"
      local ok, msg, code = cert:save(path)
      assert.is_nil(ok)
      assert.is_string(msg)
      assert.are.equal("ERR_UNCONFIGURED", code)
      assert.is_false(H.exists(path))
      for _, m in ipairs { "save_to_string", "get_subject", "get_issuer",
                           "get_serial", "get_not_before", "get_not_after",
                           "get_san", "is_ca", "get_fingerprint",
                           "get_public_key" } do
        local v, mmsg, mcode = cert[m](cert)
        assert.is_nil(v, m)
        assert.is_string(mmsg, m)
        assert.are.equal("ERR_UNCONFIGURED", mcode, m)
      end
      assert.are.equal(0, cert:get_chain_length())
      assert.are.equal("X509Certificate (empty)", tostring(cert))
      -- a failed load leaves it empty
      assert.is_nil(cert:load_from_string("nope"))
      assert.are.equal(0, cert:get_chain_length())
    end)
  end)
end)
