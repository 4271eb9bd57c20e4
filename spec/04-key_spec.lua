-- CryptoKey: loading what the `openssl` command writes (PEM, DER, PKCS#1,
-- SEC1, PKCS#8, encrypted), saving what openssl reads, and bad input.
local H = require "helpers"
local tls = H.tls
local HC = tls.HashingContext

local q = H.q
local PASS = "correct horse"

describe("CryptoKey", function()
  local crypto, dir, msgfile, digest
  local n = 0

  -- A fresh path in the spec folder.
  local function path(name)
    n = n + 1
    return ("%s/%03d-%s"):format(dir, n, name)
  end

  -- Runs `openssl <fmt>` with every %s replaced by `file`; returns file.
  local function gen(fmt, file)
    H.openssl((fmt:gsub("%%s", (q(file):gsub("%%", "%%%%")))))
    return file
  end

  -- openssl's SubjectPublicKeyInfo PEM of the key in `file`.
  local function openssl_pub(file, opts)
    return H.openssl("pkey -in " .. q(file) .. " -pubout " .. (opts or ""))
  end

  -- Proves that `k` holds the same key as `file` (as openssl reads it): the
  -- same public key, and (for a private key) a signature of ours that
  -- openssl verifies with its own idea of the public key.
  local function same_key(k, file, opts)
    local opub = openssl_pub(file, opts)
    assert.equal(opub, k:save_to_string(true))
    if not k:is_public_only() then
      local pubfile = H.write(path("pub.pem"), opub)
      local sig = assert(crypto:sign(HC.HASH_SHA256, digest, k))
      local sigfile = H.write(path("sig"), sig)
      local out = H.openssl(("dgst -sha256 -verify %s -signature %s %s")
                            :format(q(pubfile), q(sigfile), q(msgfile)))
      assert.matches("Verified OK", out)
    end
  end

  local function has(file, text)
    return H.read(file):find(text, 1, true) ~= nil
  end

  -- Base keys written by openssl, made on first use.
  local base = {}
  local function base_rsa()
    base.rsa = base.rsa or gen("genrsa -out %s 2048", path("base-rsa.pem"))
    return base.rsa
  end
  local function base_ec()
    base.ec = base.ec or gen("ecparam -genkey -noout -name prime256v1 -out %s",
                             path("base-ec.pem"))
    return base.ec
  end

  local function load_ok(file, public_only, password)
    local k = tls.CryptoKey.new()
    local ok, msg, code = k:load(file, public_only, password)
    assert(ok == true, ("load %s: %s (%s)"):format(file, tostring(msg), tostring(code)))
    return k
  end

  local function fails(code, pattern, r, msg, c)
    assert.is_nil(r)
    assert.equal("string", type(msg))
    if pattern then assert.matches(pattern, msg) end
    assert.equal(code, c)
  end

  setup(function()
    crypto = H.crypto()
    dir = H.tmpdir()
    msgfile = H.write(dir .. "/message", H.bytes(3000, 4))
    digest = H.openssl("dgst -sha256 -binary " .. q(msgfile))
  end)

  teardown(function()
    H.cleanup()
  end)

  describe("loads what openssl writes", function()
    local cases = {
      { "openssl genrsa (PKCS#8)", "genrsa -out %s 2048",
        "BEGIN PRIVATE KEY", "rsa", 2048 },
      { "openssl genrsa -traditional (PKCS#1)", "genrsa -traditional -out %s 2048",
        "BEGIN RSA PRIVATE KEY", "rsa", 2048 },
      { "openssl genpkey -algorithm RSA", "genpkey -algorithm RSA -out %s",
        "BEGIN PRIVATE KEY", "rsa", 2048 },
      { "openssl genpkey -algorithm EC P-256",
        "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s",
        "BEGIN PRIVATE KEY", "ec", 256 },
      { "openssl genpkey -algorithm EC P-384",
        "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out %s",
        "BEGIN PRIVATE KEY", "ec", 384 },
      { "openssl ecparam -genkey (EC PARAMETERS block first)",
        "ecparam -genkey -name prime256v1 -out %s",
        "BEGIN EC PARAMETERS", "ec", 256 },
      { "openssl ecparam -genkey -noout (SEC1)",
        "ecparam -genkey -noout -name prime256v1 -out %s",
        "BEGIN EC PRIVATE KEY", "ec", 256 },
      { "openssl ecparam -genkey -noout secp521r1",
        "ecparam -genkey -noout -name secp521r1 -out %s",
        "BEGIN EC PRIVATE KEY", "ec", 521 },
      { "openssl req -x509 -newkey rsa:2048 -keyout",
        "req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s.crt -subj /CN=test -days 1",
        "BEGIN PRIVATE KEY", "rsa", 2048 },
      { "openssl req -x509 -newkey ec -keyout",
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes " ..
        "-keyout %s -out %s.crt -subj /CN=test -days 1",
        "BEGIN PRIVATE KEY", "ec", 256 },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local file = gen(c[2], path("key.pem"))
        assert.is_true(has(file, c[3]))
        local k = load_ok(file)
        assert.equal(c[4], k:get_type())
        assert.equal(c[5], k:get_bits())
        assert.is_false(k:is_public_only())
        same_key(k, file)
        -- The same from a string, and as public only.
        local s = tls.CryptoKey.new()
        assert.is_true(s:load_from_string(H.read(file)))
        assert.equal(k:save_to_string(), s:save_to_string())
        local p = load_ok(file, true)
        assert.is_true(p:is_public_only())
        assert.equal(c[4], p:get_type())
        assert.equal(c[5], p:get_bits())
        same_key(p, file)
      end)
    end

    it("DER private keys: PKCS#8, PKCS#1 and SEC1", function()
      for _, c in ipairs {
        { "pkey -in " .. q(base_rsa()) .. " -outform DER -out %s", base_rsa(), "rsa" },
        { "rsa -in " .. q(base_rsa()) .. " -traditional -outform DER -out %s", base_rsa(), "rsa" },
        { "pkey -in " .. q(base_ec()) .. " -outform DER -out %s", base_ec(), "ec" },
        { "ec -in " .. q(base_ec()) .. " -outform DER -out %s", base_ec(), "ec" },
      } do
        local file = gen(c[1], path("key.der"))
        assert.not_equal(0x2d, H.read(file):byte(1))   -- not "-----"
        local k = load_ok(file)
        assert.equal(c[3], k:get_type())
        same_key(k, c[2])
        local s = tls.CryptoKey.new()
        assert.is_true(s:load_from_string(H.read(file)))
        assert.equal(k:save_to_string(), s:save_to_string())
        assert.is_true(s:load_from_string(H.read(file), true))
        assert.is_true(s:is_public_only())
        same_key(s, c[2])
      end
    end)

    it("public keys: SubjectPublicKeyInfo PEM and DER, PKCS#1 RSAPublicKey", function()
      for _, c in ipairs {
        { "pkey -in " .. q(base_rsa()) .. " -pubout -out %s", base_rsa(), "BEGIN PUBLIC KEY" },
        { "pkey -in " .. q(base_ec()) .. " -pubout -out %s", base_ec(), "BEGIN PUBLIC KEY" },
        { "pkey -in " .. q(base_rsa()) .. " -pubout -outform DER -out %s", base_rsa() },
        { "pkey -in " .. q(base_ec()) .. " -pubout -outform DER -out %s", base_ec() },
        { "rsa -in " .. q(base_rsa()) .. " -RSAPublicKey_out -out %s", base_rsa(),
          "BEGIN RSA PUBLIC KEY" },
        { "rsa -in " .. q(base_rsa()) .. " -RSAPublicKey_out -outform DER -out %s",
          base_rsa() },
      } do
        local file = gen(c[1], path("pub"))
        if c[3] then assert.is_true(has(file, c[3])) end
        local k = load_ok(file, true)
        assert.is_true(k:is_public_only())
        same_key(k, c[2])
        local s = tls.CryptoKey.new()
        assert.is_true(s:load_from_string(H.read(file), true))
        assert.equal(k:save_to_string(true), s:save_to_string(true))
        -- Usable: a signature by the private key verifies.
        local priv = load_ok(c[2])
        local sig = assert(crypto:sign(HC.HASH_SHA256, digest, priv))
        assert.is_true(crypto:verify(HC.HASH_SHA256, digest, sig, k))
      end
    end)

    describe("encrypted keys", function()
      local cases = {
        { "openssl genrsa -aes256 (PKCS#8, PBES2)",
          "genrsa -aes256 -passout " .. q("pass:" .. PASS) .. " -out %s 2048",
          "BEGIN ENCRYPTED PRIVATE KEY", "rsa" },
        { "openssl genpkey -algorithm RSA -aes256",
          "genpkey -algorithm RSA -aes256 -pass " .. q("pass:" .. PASS) .. " -out %s",
          "BEGIN ENCRYPTED PRIVATE KEY", "rsa" },
        { "openssl genpkey -algorithm EC -aes-128-cbc",
          "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes-128-cbc -pass " ..
          q("pass:" .. PASS) .. " -out %s",
          "BEGIN ENCRYPTED PRIVATE KEY", "ec" },
        { "openssl rsa -aes256 -traditional (legacy PEM encryption)",
          function() return "rsa -in " .. q(base_rsa()) .. " -aes256 -traditional -passout " ..
            q("pass:" .. PASS) .. " -out %s" end,
          "Proc-Type: 4,ENCRYPTED", "rsa" },
        { "openssl ec -aes256 (legacy PEM encryption)",
          function() return "ec -in " .. q(base_ec()) .. " -aes256 -passout " ..
            q("pass:" .. PASS) .. " -out %s" end,
          "Proc-Type: 4,ENCRYPTED", "ec" },
        { "openssl pkcs8 -v2 aes-192-cbc -v2prf hmacWithSHA512",
          function() return "pkcs8 -topk8 -in " .. q(base_ec()) ..
            " -v2 aes-192-cbc -v2prf hmacWithSHA512 -passout " .. q("pass:" .. PASS) ..
            " -out %s" end,
          "BEGIN ENCRYPTED PRIVATE KEY", "ec" },
        { "openssl pkcs8 -v1 PBE-SHA1-3DES (PKCS#12 PBE)",
          function() return "pkcs8 -topk8 -in " .. q(base_rsa()) ..
            " -v1 PBE-SHA1-3DES -passout " .. q("pass:" .. PASS) .. " -out %s" end,
          "BEGIN ENCRYPTED PRIVATE KEY", "rsa" },
      }
      for _, c in ipairs(cases) do
        it(c[1] .. ": right, wrong and no password", function()
          local cmd = type(c[2]) == "function" and c[2]() or c[2]
          local file = gen(cmd, path("enc.pem"))
          assert.is_true(has(file, c[3]))
          local passin = "-passin " .. q("pass:" .. PASS)

          local k = load_ok(file, false, PASS)
          assert.equal(c[4], k:get_type())
          assert.is_false(k:is_public_only())
          same_key(k, file, passin)
          -- The saved key is not encrypted any more and is the same key.
          local s = tls.CryptoKey.new()
          assert.is_true(s:load_from_string(k:save_to_string()))
          same_key(s, file, passin)
          assert.is_true(s:load_from_string(H.read(file), false, PASS))
          assert.equal(k:save_to_string(), s:save_to_string())
          local p = load_ok(file, true, PASS)
          assert.is_true(p:is_public_only())
          same_key(p, file, passin)

          local e = tls.CryptoKey.new()
          fails("ERR_UNAUTHORIZED", "password", e:load(file, false, "wrong horse"))
          fails("ERR_UNAUTHORIZED", "password", e:load(file, false, PASS .. " "))
          fails("ERR_UNAUTHORIZED", "password", e:load(file))
          fails("ERR_UNAUTHORIZED", "password", e:load(file, true))
          fails("ERR_UNAUTHORIZED", "password",
                e:load_from_string(H.read(file), false, "wrong"))
          fails("ERR_UNAUTHORIZED", "password", e:load_from_string(H.read(file)))
          -- openssl agrees the password is wrong.
          assert.is_false((H.try_openssl("pkey -noout -in " .. q(file) ..
                                         " -passin pass:wrong")))
          local r, m, code = e:get_type()
          fails("ERR_UNCONFIGURED", nil, r, m, code)
        end)
      end

      it("AES-encrypted PKCS#8 in DER (regression: mbedtls 2.28 called it an invalid format)",
         function()
        local file = gen("pkcs8 -topk8 -in " .. q(base_rsa()) ..
                         " -v2 aes-256-cbc -outform DER -passout " .. q("pass:" .. PASS) ..
                         " -out %s", path("enc.der"))
        local k = load_ok(file, false, PASS)
        same_key(k, base_rsa())
        local p = load_ok(file, true, PASS)
        assert.is_true(p:is_public_only())
        same_key(p, base_rsa())
        fails("ERR_UNAUTHORIZED", "wrong password",
              tls.CryptoKey.new():load(file, false, "wrong"))
        -- (regression: without a password, encrypted DER was a corrupt file)
        fails("ERR_UNAUTHORIZED", "pass its password", tls.CryptoKey.new():load(file))
        fails("ERR_UNAUTHORIZED", "pass its password",
              tls.CryptoKey.new():load_from_string(H.read(file), true))
        -- Truncated, it is corrupt whatever the password.
        local der = H.read(file)
        fails("ERR_FILE_CORRUPT", nil, tls.CryptoKey.new():load(
              H.write(path("cut.der"), der:sub(1, #der - 16)), false, PASS))
      end)

      it("a wrong password is ERR_UNAUTHORIZED, never a corrupt key (regression)",
         function()
        -- Fixed keys (password "right") and wrong passwords whose decryption
        -- passed mbedtls' padding/sanity checks, so that only the parsing of
        -- the decrypted bytes failed: this used to be "ERR_FILE_CORRUPT"
        -- about one time in 250 (wrong227 and wrong532 on 2.28, wrong511,
        -- wrong582, wrong608 on 3.6; wrong408, wrong522, wrong556 on both).
        local legacy = table.concat({
          "-----BEGIN EC PRIVATE KEY-----",
          "Proc-Type: 4,ENCRYPTED",
          "DEK-Info: AES-128-CBC,F9020EE676D6CB7AE6CFF56CEC1463D1",
          "",
          "NCwQL4+zfYdfNTM0RMD7AGaJi+CMJH4fY67hKLvw/GXL4cK7GjfSxrQjWK6P6XYg",
          "p8SgpTuL/736DPqJf8a9aziXctqPLF8m5OHtIqgB3cCTrvv6AlLvfIlEMFJ/B+oE",
          "ma55ZDxVnlBkjeAFa6yE1MCSWzqB4f6ZSyXqGTzgHDQ=",
          "-----END EC PRIVATE KEY-----", "" }, "\n")
        local pkcs12 = table.concat({
          "-----BEGIN ENCRYPTED PRIVATE KEY-----",
          "MIGxMBwGCiqGSIb3DQEMAQMwDgQIjoCUEBcUQxYCAggABIGQJDrR/DYr5Mxq91de",
          "xottqe7VY/+OdsJVx8L6Y66R8xU89Z0imn9NdNOv7Zl3ERmVaAA/Dv3BpOIwvdUZ",
          "hvcm3m70+9M/dmXqa2iT7MZiU1UYT8SzZhBHMOQWrN+bH8Io3qXjfzH8IyZGnro1",
          "oRfkuoC43/h0ktvT7QlYfiKCtmD9t2A6LOt6gPGJhBNTMqSv",
          "-----END ENCRYPTED PRIVATE KEY-----", "" }, "\n")
        local k = tls.CryptoKey.new()
        assert.is_true(k:load_from_string(legacy, false, "right"))
        local lfile = H.write(path("legacy.pem"), legacy)
        same_key(k, lfile, "-passin pass:right")
        for i = 1, 700 do
          fails("ERR_UNAUTHORIZED", "wrong password",
                k:load_from_string(legacy, false, "wrong" .. i))
        end
        fails("ERR_UNAUTHORIZED", "wrong password", k:load(lfile, false, "wrong227"))
        fails("ERR_UNAUTHORIZED", "wrong password", k:load(lfile, true, "wrong511"))
        local pfile = H.write(path("pkcs12.pem"), pkcs12)
        local p = load_ok(pfile, false, "right")
        same_key(p, pfile, "-passin pass:right")
        for _, i in ipairs { 408, 522, 556 } do
          fails("ERR_UNAUTHORIZED", "wrong password",
                p:load(pfile, false, "wrong" .. i))
        end
        -- The same ciphertext in DER.
        local dfile = path("pkcs12.der")
        H.openssl("asn1parse -noout -in " .. q(pfile) .. " -out " .. q(dfile))
        local d = load_ok(dfile, false, "right")
        same_key(d, pfile, "-passin pass:right")
        for _, i in ipairs { 408, 522, 556 } do
          fails("ERR_UNAUTHORIZED", "wrong password",
                d:load(dfile, false, "wrong" .. i))
        end
        -- The failures did not touch the loaded keys.
        same_key(d, pfile, "-passin pass:right")
        same_key(k, lfile, "-passin pass:right")
        same_key(p, pfile, "-passin pass:right")
        -- An encrypted key whose PEM is broken is still reported as corrupt
        -- (only a well-formed ciphertext that decrypts to garbage counts as
        -- a wrong password, as openssl's "bad decrypt").
        fails("ERR_FILE_CORRUPT", nil, k:load(H.write(path("cut.pem"),
              legacy:sub(1, math.floor(#legacy / 2))), false, "right"))
        fails("ERR_FILE_CORRUPT", nil, k:load(H.write(path("bad64.pem"),
              (legacy:gsub("ma55ZDxV", "ma5!ZDxV"))), false, "right"))
      end)

      it("a password given for an unencrypted key is ignored", function()
        local k = load_ok(base_rsa(), false, "unused")
        same_key(k, base_rsa())
      end)
    end)
  end)

  describe("saves what openssl reads", function()
    local rsa, ec
    local function keys()
      rsa = rsa or assert(crypto:generate_rsa(2048))
      ec = ec or assert(crypto:generate_ec("secp384r1"))
      return rsa, ec
    end

    it("private keys pass openssl pkey -check, mode 0600", function()
      for _, k in ipairs { keys() } do
        local file = path("saved.pem")
        assert.is_true(k:save(file))
        assert.equal("600", H.mode(file))
        H.openssl("pkey -check -noout -in " .. q(file))
        assert.equal(k:save_to_string(), H.read(file))
        assert.equal(openssl_pub(file), k:save_to_string(true))
        same_key(k, file)
      end
    end)

    it("public keys are read by openssl pkey -pubin, mode 0644", function()
      for _, k in ipairs { keys() } do
        local priv, pub = path("priv.pem"), path("pub.pem")
        assert.is_true(k:save(priv))
        assert.is_true(k:save(pub, true))
        assert.equal("644", H.mode(pub))
        assert.is_true(has(pub, "-----BEGIN PUBLIC KEY-----"))
        assert.is_false(has(pub, "PRIVATE"))
        local out = H.openssl("pkey -pubin -in " .. q(pub) .. " -pubout")
        assert.equal(openssl_pub(priv), out)
        assert.equal(out, H.read(pub))
      end
    end)

    it("overwrites an existing file and leaves no temporary file", function()
      local rsa_key = keys()
      local sub = dir .. "/overwrite"
      assert(H.execute("mkdir " .. q(sub)))
      local file = H.write(sub .. "/key.pem", "old contents\n")
      assert(H.execute("chmod 644 " .. q(file)))
      assert.is_true(rsa_key:save(file))
      assert.equal(rsa_key:save_to_string(), H.read(file))
      assert.equal("600", H.mode(file))
      assert.is_true(rsa_key:save(file, true))
      assert.equal(rsa_key:save_to_string(true), H.read(file))
      assert.equal("644", H.mode(file))
      local _, list = H.run("ls -A " .. q(sub))
      assert.equal("key.pem\n", list)
    end)

    it("round-trips through save_to_string / load_from_string", function()
      for _, k in ipairs { keys() } do
        local pem = k:save_to_string()
        assert.equal(pem, k:save_to_string(false))
        local k2 = tls.CryptoKey.new()
        assert.is_true(k2:load_from_string(pem))
        assert.is_false(k2:is_public_only())
        assert.equal(pem, k2:save_to_string())
        assert.equal(k:get_bits(), k2:get_bits())
        local sig = assert(crypto:sign(HC.HASH_SHA256, digest, k2))
        assert.is_true(crypto:verify(HC.HASH_SHA256, digest, sig, k))

        local pub = k:save_to_string(true)
        local k3 = tls.CryptoKey.new()
        assert.is_true(k3:load_from_string(pub, true))
        assert.is_true(k3:is_public_only())
        assert.equal(pub, k3:save_to_string(true))
        assert.is_true(crypto:verify(HC.HASH_SHA256, digest, sig, k3))

        -- A private key loaded as public keeps only the public half.
        local k4 = tls.CryptoKey.new()
        assert.is_true(k4:load_from_string(pem, true))
        assert.is_true(k4:is_public_only())
        assert.equal(pub, k4:save_to_string(true))
        fails("ERR_INVALID_PARAMETER", "public", k4:save_to_string())
        fails("ERR_INVALID_PARAMETER", nil, crypto:sign(HC.HASH_SHA256, digest, k4))
        assert.matches("public", tostring(k4))
        assert.matches("private", tostring(k2))
      end
    end)
  end)

  describe("bad input", function()
    local function good_key()
      return load_ok(base_rsa())
    end

    it("load of a missing path", function()
      local missing = dir .. "/no-such-file.pem"
      fails("ERR_FILE_NOT_FOUND", "no%-such%-file", tls.CryptoKey.new():load(missing))
      fails("ERR_FILE_NOT_FOUND", nil,
            tls.CryptoKey.new():load(dir .. "/no-such-dir/key.pem"))
    end)

    it("load of a directory", function()
      fails("ERR_FILE_CANT_OPEN", "director", tls.CryptoKey.new():load(dir))
    end)

    it("load of an empty file, garbage, or an unsupported key type", function()
      local k = tls.CryptoKey.new()
      fails("ERR_FILE_CORRUPT", "empty", k:load(H.write(path("empty"), "")))
      fails("ERR_INVALID_DATA", "empty", k:load_from_string(""))
      fails("ERR_FILE_CORRUPT", nil, k:load(H.write(path("garbage"), H.bytes(500, 1))))
      fails("ERR_FILE_CORRUPT", nil, k:load(H.write(path("text"), "hello world\n")))
      fails("ERR_INVALID_DATA", nil, k:load_from_string(H.bytes(500, 1)))
      fails("ERR_INVALID_DATA", nil, k:load_from_string("-----BEGIN "))
      local ed = gen("genpkey -algorithm ed25519 -out %s", path("ed25519.pem"))
      fails("ERR_FILE_CORRUPT", "unsupported", k:load(ed))
      fails("ERR_FILE_CORRUPT", nil, k:load(ed, true))
      assert.matches("empty", tostring(k))
    end)

    it("load of a truncated PEM or DER", function()
      local k = tls.CryptoKey.new()
      for _, src in ipairs { base_rsa(), base_ec() } do
        local pem = H.read(src)
        fails("ERR_FILE_CORRUPT", nil,
              k:load(H.write(path("half.pem"), pem:sub(1, math.floor(#pem / 2)))))
        -- Only the END line missing.
        local noend = pem:gsub("%-%-%-%-%-END[^\n]*\n$", "")
        assert.not_equal(pem, noend)
        fails("ERR_FILE_CORRUPT", nil, k:load(H.write(path("noend.pem"), noend)))
        local der = H.openssl("pkey -in " .. q(src) .. " -outform DER")
        fails("ERR_FILE_CORRUPT", nil,
              k:load(H.write(path("half.der"), der:sub(1, math.floor(#der / 2)))))
        fails("ERR_FILE_CORRUPT", nil,
              k:load(H.write(path("cut.der"), der:sub(1, #der - 1))))
        fails("ERR_INVALID_DATA", nil, k:load_from_string(der:sub(1, #der - 1)))
      end
    end)

    it("load of a PEM with a wrong header", function()
      local k = tls.CryptoKey.new()
      local crt = path("cert.pem")
      gen("req -x509 -key " .. q(base_rsa()) .. " -out %s -subj /CN=x -days 1", crt)
      fails("ERR_FILE_CORRUPT", nil, k:load(crt))
      fails("ERR_FILE_CORRUPT", nil, k:load(crt, true))
      -- A real key's body under a certificate's label.
      local relabeled = H.read(base_rsa()):gsub("PRIVATE KEY", "CERTIFICATE")
      fails("ERR_FILE_CORRUPT", nil, k:load(H.write(path("relabeled.pem"), relabeled)))
      fails("ERR_INVALID_DATA", nil, k:load_from_string(relabeled))
      assert.matches("empty", tostring(k))
    end)

    it("load of a public key with public_only = false", function()
      local k = tls.CryptoKey.new()
      local pem = gen("pkey -in " .. q(base_ec()) .. " -pubout -out %s", path("pub.pem"))
      local der = gen("pkey -in " .. q(base_rsa()) .. " -pubout -outform DER -out %s",
                      path("pub.der"))
      fails("ERR_INVALID_DATA", "public_only = true", k:load(pem))
      fails("ERR_INVALID_DATA", "public_only = true", k:load(der, false))
      fails("ERR_INVALID_DATA", "public_only", k:load_from_string(H.read(pem)))
      assert.matches("empty", tostring(k))
    end)

    it("save and save_to_string of an empty key", function()
      local k = tls.CryptoKey.new()
      local file = path("empty-save.pem")
      fails("ERR_UNCONFIGURED", "empty", k:save(file))
      fails("ERR_UNCONFIGURED", "empty", k:save(file, true))
      fails("ERR_UNCONFIGURED", "empty", k:save_to_string())
      fails("ERR_UNCONFIGURED", "empty", k:save_to_string(true))
      fails("ERR_UNCONFIGURED", nil, k:get_bits())
      assert.is_false(H.exists(file))
      assert.is_false(k:is_public_only())
    end)

    it("save of a public-only key as private", function()
      local k = load_ok(base_rsa(), true)
      local file = H.write(path("existing.pem"), "keep me")
      fails("ERR_INVALID_PARAMETER", "public_only", k:save(file))
      assert.equal("keep me", H.read(file))
      assert.is_true(k:save(file, true))
      assert.equal(openssl_pub(base_rsa()), H.read(file))
    end)

    it("save into a missing folder or an unwritable target", function()
      local k = good_key()
      local sub = dir .. "/cantwrite"
      assert(H.execute("mkdir " .. q(sub)))
      local regular = H.write(sub .. "/regular", "x")
      for _, target in ipairs {
        sub .. "/missing/key.pem",      -- no such folder
        regular .. "/key.pem",          -- a file where a folder should be
        "/proc/tlspeer-spec-key.pem",   -- unwritable even for root
      } do
        fails("ERR_FILE_CANT_WRITE", "cannot write", k:save(target))
        fails("ERR_FILE_CANT_WRITE", nil, k:save(target, true))
        assert.is_false(H.exists(target))
      end
      local _, list = H.run("ls -A " .. q(sub))
      assert.equal("regular\n", list)
    end)

    it("save to a directory path", function()
      local k = good_key()
      local sub = dir .. "/savedir"
      assert(H.execute("mkdir -p " .. q(sub .. "/target")))
      fails("ERR_FILE_CANT_WRITE", nil, k:save(sub .. "/target"))
      local ok = H.run("test -d " .. q(sub .. "/target"))
      assert.is_true(ok)
      local _, list = H.run("ls -A " .. q(sub) .. "; ls -A " .. q(sub .. "/target"))
      assert.equal("target\n", list)
    end)

    it("a failed load leaves the previous key intact", function()
      local k = good_key()
      local before = k:save_to_string()
      local pubfile = gen("pkey -in " .. q(base_ec()) .. " -pubout -out %s", path("p.pem"))
      local encfile = gen("pkey -in " .. q(base_ec()) .. " -aes256 -passout pass:X -out %s",
                          path("e.pem"))
      local results = {
        { k:load(dir .. "/missing.pem") },
        { k:load(dir) },
        { k:load(H.write(path("g.pem"), H.bytes(100, 3))) },
        { k:load(H.write(path("h.pem"), before:sub(1, math.floor(#before / 2)))) },
        { k:load(pubfile) },
        { k:load(encfile) },
        { k:load(encfile, false, "Y") },
        { k:load_from_string("") },
        { k:load_from_string("garbage") },
      }
      for i, r in ipairs(results) do
        assert.is_nil(r[1], "case " .. i)
        assert.equal("string", type(r[2]))
        assert.equal("string", type(r[3]))
      end
      assert.equal(before, k:save_to_string())
      assert.is_false(k:is_public_only())
      same_key(k, base_rsa())
      -- And a public-only key stays public-only after a failed load.
      local p = load_ok(pubfile, true)
      assert.is_nil(p:load(dir .. "/missing.pem", true))
      assert.is_true(p:is_public_only())
      same_key(p, base_ec())
    end)
  end)

  describe("arguments and lifetime", function()
    it("raises on wrong argument types", function()
      local k = load_ok(base_ec())
      local file = base_ec()
      for _, f in ipairs {
        function() k:load() end,
        function() k:load(nil) end,
        function() k:load({}) end,
        function() k:load(true) end,
        function() k:load(file, "yes") end,
        function() k:load(file, 1) end,
        function() k:load(file, {}) end,
        function() k:load(file, false, {}) end,
        function() k:load(file, false, true) end,
        function() k:load_from_string() end,
        function() k:load_from_string({}) end,
        function() k:load_from_string(false) end,
        function() k:load_from_string("x", 0) end,
        function() k:load_from_string("x", false, {}) end,
        function() k:save() end,
        function() k:save({}) end,
        function() k:save(true) end,
        function() k:save(dir .. "/t.pem", "yes") end,
        function() k:save(dir .. "/t.pem", 0) end,
        function() k:save_to_string("yes") end,
        function() k:save_to_string(1) end,
        function() k.load(crypto, file) end,
        function() k.save_to_string({}) end,
        function() k.get_type(nil) end,
        function() k.get_bits("x") end,
        function() k.is_public_only(crypto) end,
      } do
        assert.has_error(f)
      end
      assert.is_false(H.exists(dir .. "/t.pem"))
      -- The key is still the same after all of that.
      same_key(k, base_ec())
    end)

    it("load raises on a bad optional argument even when the file is missing (regression)",
       function()
      local k = tls.CryptoKey.new()
      local missing = dir .. "/missing.pem"
      assert.has_error(function() k:load(missing, 1) end)
      assert.has_error(function() k:load(missing, "yes") end)
      assert.has_error(function() k:load(missing, false, {}) end)
      assert.has_error(function() k:load(dir, nil, true) end)
      fails("ERR_FILE_NOT_FOUND", nil, k:load(missing, nil, nil))
      fails("ERR_FILE_NOT_FOUND", nil, k:load(missing, true, "pw"))
    end)

    it("raises after close; closing twice is fine; tostring says (closed)", function()
      local k = load_ok(base_rsa())
      assert.matches("^CryptoKey %(RSA 2048%-bit, private%)$", tostring(k))
      local mt = getmetatable(k)
      mt.__close(k)
      mt.__close(k)
      mt.__gc(k)
      assert.equal("CryptoKey (closed)", tostring(k))
      for _, call in ipairs {
        function() return k:load(base_rsa()) end,
        function() return k:load_from_string(H.read(base_rsa())) end,
        function() return k:save(dir .. "/closed.pem") end,
        function() return k:save_to_string() end,
        function() return k:save_to_string(true) end,
        function() return k:is_public_only() end,
        function() return k:get_type() end,
        function() return k:get_bits() end,
        function() return crypto:sign(HC.HASH_SHA256, digest, k) end,
        function() return crypto:verify(HC.HASH_SHA256, digest, "x", k) end,
        function() return crypto:encrypt(k, "x") end,
      } do
        local ok, err = pcall(call)
        assert.is_false(ok)
        assert.matches("attempt to use a closed CryptoKey", err)
      end
      assert.is_false(H.exists(dir .. "/closed.pem"))
    end)

    -- (a <close> variable: spec/90-lua54_close_spec.lua)
  end)
end)
