-- Crypto: random bytes, key generation, sign/verify, RSA encrypt/decrypt,
-- HMAC and constant-time comparison, each checked against the real
-- `openssl` command.
local H = require "helpers"
local tls = H.tls
local HC = tls.HashingContext

local q = H.q

-- Hash enum value, openssl digest name, digest length.
local HASHES = {
  md5    = { HC.HASH_MD5,    "md5",    16 },
  sha1   = { HC.HASH_SHA1,   "sha1",   20 },
  sha256 = { HC.HASH_SHA256, "sha256", 32 },
  sha512 = { HC.HASH_SHA512, "sha512", 64 },
}

describe("Crypto", function()
  local crypto, dir

  -- Keys generated once, on first use, and saved (private and public PEM)
  -- for openssl.
  local cache = {}
  local function key(name)
    if not cache[name] then
      local k
      if name == "rsa" then
        k = assert(crypto:generate_rsa(2048))
      elseif name == "rsa2" then
        k = assert(crypto:generate_rsa(1024))
      else
        k = assert(crypto:generate_ec(name))
      end
      local priv, pub = dir .. "/" .. name .. ".pem", dir .. "/" .. name .. ".pub"
      assert(k:save(priv))
      H.openssl("pkey -in " .. q(priv) .. " -pubout -out " .. q(pub))
      cache[name] = { key = k, priv = priv, pub = pub }
    end
    return cache[name]
  end

  -- A file with `data`, named after `name`, in the spec folder.
  local function file(name, data)
    return H.write(dir .. "/" .. name, data)
  end

  -- openssl's raw digest of the file at `path`.
  local function digest(alg, path)
    return H.openssl("dgst -" .. alg .. " -binary " .. q(path))
  end

  setup(function()
    crypto = H.crypto()
    dir = H.tmpdir()
  end)

  teardown(function()
    H.cleanup()
  end)

  describe("generate_random_bytes", function()
    it("returns exactly the asked number of bytes", function()
      for _, n in ipairs { 0, 1, 1000, 1024, 1025, 5000 } do
        local s = crypto:generate_random_bytes(n)
        assert.equal("string", type(s))
        assert.equal(n, #s)
      end
    end)

    it("gives different bytes on every call and in every DRBG block", function()
      local a, b = crypto:generate_random_bytes(5000),
                   crypto:generate_random_bytes(5000)
      assert.not_equal(a, b)
      -- 5000 bytes cross the 1024-byte DRBG request size: no block repeats.
      local seen = {}
      for i = 1, 4097, 1024 do
        local block = a:sub(i, i + 1023)
        assert.is_nil(seen[block])
        seen[block] = true
      end
      -- Sanity of the distribution: 5000 random bytes use almost every
      -- byte value, and do not compress.
      local values = {}
      for i = 1, #a do values[a:byte(i)] = true end
      local distinct = 0
      for _ in pairs(values) do distinct = distinct + 1 end
      assert.is_true(distinct > 240)
      local path = file("random.bin", a)
      local ok, out = H.run("gzip -9 -c " .. q(path) .. " | wc -c")
      assert(ok, out)
      assert.is_true(tonumber(out) >= 5000)
    end)

    it("raises on an out-of-range or non-integer size", function()
      assert.has_error(function() crypto:generate_random_bytes(-1) end)
      assert.has_error(function() crypto:generate_random_bytes(2 ^ 31) end)
      assert.has_error(function() crypto:generate_random_bytes(2 ^ 30 + 1) end)
      assert.has_error(function() crypto:generate_random_bytes(1.5) end)
      assert.has_error(function() crypto:generate_random_bytes("x") end)
      assert.has_error(function() crypto:generate_random_bytes() end)
      assert.has_error(function() crypto.generate_random_bytes({}, 1) end)
    end)
  end)

  describe("generate_rsa", function()
    it("makes a 2048-bit RSA key that openssl checks", function()
      local k = key("rsa")
      assert.equal("rsa", k.key:get_type())
      assert.equal(2048, k.key:get_bits())
      assert.is_false(k.key:is_public_only())
      H.openssl("pkey -check -noout -in " .. q(k.priv))
      local text = H.openssl("pkey -text -noout -in " .. q(k.priv))
      assert.truthy(text:find("2048 bit", 1, true))
      assert.truthy(text:find("publicExponent: 65537", 1, true))
      assert.matches("RSA 2048%-bit, private", tostring(k.key))
    end)

    it("makes a different key every time", function()
      local again = assert(crypto:generate_rsa(1024))
      assert.equal(1024, key("rsa2").key:get_bits())
      assert.equal(1024, again:get_bits())
      assert.not_equal(key("rsa2").key:save_to_string(true), again:save_to_string(true))
      H.openssl("pkey -check -noout -in " .. q(key("rsa2").priv))
      assert.not_equal(key("secp256r1").key:save_to_string(true),
                       crypto:generate_ec("secp256r1"):save_to_string(true))
    end)

    it("raises on an odd, out-of-range or non-integer size", function()
      for _, bits in ipairs { 7, 1025, 1022, 8194, 2 ^ 40, -2048, 0 } do
        assert.has_error(function() crypto:generate_rsa(bits) end)
      end
      assert.has_error(function() crypto:generate_rsa("x") end)
      assert.has_error(function() crypto:generate_rsa(2048.5) end)
      assert.has_error(function() crypto:generate_rsa() end)
      assert.has_error(function() crypto:generate_rsa({}) end)
    end)
  end)

  describe("generate_ec", function()
    for _, c in ipairs {
      { "secp256r1", 256, "prime256v1" },
      { "secp384r1", 384, "secp384r1" },
      { "secp521r1", 521, "secp521r1" },
    } do
      it("makes a " .. c[1] .. " key that openssl checks", function()
        local k = key(c[1])
        assert.equal("ec", k.key:get_type())
        assert.equal(c[2], k.key:get_bits())
        assert.is_false(k.key:is_public_only())
        H.openssl("pkey -check -noout -in " .. q(k.priv))
        local text = H.openssl("ec -text -noout -in " .. q(k.priv))
        assert.truthy(text:find("ASN1 OID: " .. c[3], 1, true), text)
        assert.truthy(tostring(k.key):find(c[1], 1, true))
      end)
    end

    it("defaults to secp256r1", function()
      local k = crypto:generate_ec()
      assert.equal("ec", k:get_type())
      assert.equal(256, k:get_bits())
      local path = dir .. "/default-ec.pem"
      assert(k:save(path))
      local text = H.openssl("ec -text -noout -in " .. q(path))
      assert.truthy(text:find("ASN1 OID: prime256v1", 1, true))
    end)

    it("raises on an unknown curve", function()
      -- (P-256 and prime256v1 are names of secp256r1: spec 32)
      for _, curve in ipairs { "secp256k1", "P-192", "x25519",
                               "", "SECP256R1" } do
        assert.has_error(function() crypto:generate_ec(curve) end)
      end
      assert.has_error(function() crypto:generate_ec(256) end)
      assert.has_error(function() crypto:generate_ec({}) end)
    end)
  end)

  describe("sign and verify", function()
    local cases = {
      { "rsa",       { "md5", "sha1", "sha256", "sha512" } },
      { "secp256r1", { "sha1", "sha256", "sha512" } },
      { "secp384r1", { "sha1", "sha256", "sha512" } },
      { "secp521r1", { "sha512" } },
    }
    for ci, case in ipairs(cases) do
      local kname, algs = case[1], case[2]
      for ai, alg in ipairs(algs) do
        it(("%s with %s: ours verifies in openssl and openssl's in ours")
             :format(kname, alg), function()
          local k = key(kname)
          local h = HASHES[alg]
          local tag = kname .. "-" .. alg
          local msg = file(tag .. ".msg", H.bytes(777 + ai, ci * 100 + ai))
          local other = file(tag .. ".other", H.bytes(777 + ai, ci * 100 + ai + 50))
          local d = digest(alg, msg)
          assert.equal(h[3], #d)

          -- Ours, checked by openssl.
          local sig = assert(crypto:sign(h[1], d, k.key))
          local sigfile = file(tag .. ".sig", sig)
          local out = H.openssl(("dgst -%s -verify %s -signature %s %s")
                                :format(alg, q(k.pub), q(sigfile), q(msg)))
          assert.matches("Verified OK", out)
          -- openssl really checks: the other message does not verify.
          local ok = H.try_openssl(("dgst -%s -verify %s -signature %s %s")
                                   :format(alg, q(k.pub), q(sigfile), q(other)))
          assert.is_false(ok)

          -- openssl's, checked by ours (with the private and a public key).
          local osigfile = dir .. "/" .. tag .. ".osig"
          H.openssl(("dgst -%s -sign %s -out %s %s")
                    :format(alg, q(k.priv), q(osigfile), q(msg)))
          local osig = H.read(osigfile)
          assert.is_true(crypto:verify(h[1], d, osig, k.key))
          local pub = tls.CryptoKey.new()
          assert(pub:load(k.pub, true))
          assert.is_true(crypto:verify(h[1], d, osig, pub))
          assert.is_true(crypto:verify(h[1], d, sig, pub))

          if kname == "rsa" then
            -- PKCS#1 v1.5 is deterministic: the very same bytes.
            assert.equal(H.hex(osig), H.hex(sig))
            assert.equal(256, #sig)
          else
            -- DER ECDSA-Sig-Value: SEQUENCE of two INTEGERs.
            assert.equal(0x30, sig:byte(1))
            local asn = H.openssl("asn1parse -inform DER -in " .. q(sigfile))
            local _, ints = asn:gsub("prim: INTEGER", "")
            assert.equal(2, ints)
          end

          -- Tampered signature, other message, other key: false.
          local bad = sig:sub(1, 10) .. string.char(H.bxor(sig:byte(11), 0x01)) .. sig:sub(12)
          assert.is_false(crypto:verify(h[1], d, bad, k.key))
          assert.is_false(crypto:verify(h[1], digest(alg, other), sig, k.key))
          local otherkey = kname == "rsa" and key("rsa2") or
                           key(kname == "secp256r1" and "secp384r1" or "secp256r1")
          assert.is_false(crypto:verify(h[1], d, sig, otherkey.key))
          assert.is_false(crypto:verify(h[1], d, "", k.key))
          assert.is_false(crypto:verify(h[1], d, sig .. "\0", k.key))
        end)
      end
    end

    it("raises when the digest length does not match the hash type", function()
      local k = key("rsa").key
      local d = H.bytes(32, 1)
      for _, bad in ipairs {
        { HC.HASH_SHA256, d:sub(1, 31) },
        { HC.HASH_SHA256, d .. "x" },
        { HC.HASH_SHA256, "" },
        { HC.HASH_SHA1, d },
        { HC.HASH_MD5, d },
        { HC.HASH_SHA512, d },
      } do
        assert.has_error(function() crypto:sign(bad[1], bad[2], k) end)
        assert.has_error(function() crypto:verify(bad[1], bad[2], "sig", k) end)
      end
      local ok, err = pcall(crypto.sign, crypto, HC.HASH_SHA256, "message", k)
      assert.is_false(ok)
      assert.matches("pass the hash, not the message", err)
    end)

    it("raises on an unknown hash type or wrong argument types", function()
      local k = key("secp256r1").key
      local d = H.bytes(32, 2)
      assert.has_error(function() crypto:sign(4, d, k) end)
      assert.has_error(function() crypto:sign(-1, d, k) end)
      assert.has_error(function() crypto:sign("sha256", d, k) end)
      assert.has_error(function() crypto:sign(HC.HASH_SHA256, {}, k) end)
      assert.has_error(function() crypto:sign(HC.HASH_SHA256, d, nil) end)
      assert.has_error(function() crypto:sign(HC.HASH_SHA256, d, crypto) end)
      assert.has_error(function() crypto:verify(HC.HASH_SHA256, d, nil, k) end)
      assert.has_error(function() crypto:verify(HC.HASH_SHA256, d, "s", {}) end)
      assert.has_error(function() crypto:verify(7, d, "s", k) end)
    end)

    it("fails with a public-only or empty key in sign", function()
      local pub = tls.CryptoKey.new()
      assert(pub:load(key("rsa").pub, true))
      local d = H.bytes(32, 3)
      local r, msg, code = crypto:sign(HC.HASH_SHA256, d, pub)
      assert.is_nil(r)
      assert.matches("private key", msg)
      assert.equal("ERR_INVALID_PARAMETER", code)
      r, msg, code = crypto:sign(HC.HASH_SHA256, d, tls.CryptoKey.new())
      assert.is_nil(r)
      assert.matches("empty", msg)
      assert.equal("ERR_INVALID_PARAMETER", code)
      r, msg, code = crypto:verify(HC.HASH_SHA256, d, "sig", tls.CryptoKey.new())
      assert.is_nil(r)
      assert.equal("string", type(msg))
      assert.equal("ERR_INVALID_PARAMETER", code)
    end)
  end)

  describe("encrypt and decrypt", function()
    it("decrypts what openssl pkeyutl encrypts", function()
      local k = key("rsa")
      for i, n in ipairs { 0, 1, 32, 245 } do
        local pt = H.bytes(n, 40 + i)
        local ptfile, ctfile = file("pt" .. i, pt), dir .. "/ct" .. i
        H.openssl(("pkeyutl -encrypt -pubin -inkey %s -in %s -out %s")
                  :format(q(k.pub), q(ptfile), q(ctfile)))
        local ct = H.read(ctfile)
        assert.equal(256, #ct)
        assert.equal(pt, crypto:decrypt(k.key, ct))
      end
    end)

    it("encrypts what openssl pkeyutl decrypts, with a public-only key too", function()
      local k = key("rsa")
      local pub = tls.CryptoKey.new()
      assert(pub:load(k.pub, true))
      for i, n in ipairs { 1, 100, 245 } do
        local pt = H.bytes(n, 60 + i)
        local ct = assert(crypto:encrypt(i % 2 == 1 and pub or k.key, pt))
        assert.equal(256, #ct)
        local ctfile, outfile = file("oct" .. i, ct), dir .. "/opt" .. i
        H.openssl(("pkeyutl -decrypt -inkey %s -in %s -out %s")
                  :format(q(k.priv), q(ctfile), q(outfile)))
        assert.equal(H.hex(pt), H.hex(H.read(outfile)))
        -- PKCS#1 v1.5 padding is random: the same plaintext differs.
        assert.not_equal(ct, crypto:encrypt(pub, pt))
        assert.equal(pt, crypto:decrypt(k.key, ct))
      end
    end)

    it("fails on a too-long plaintext", function()
      local k = key("rsa").key
      local r, msg, code = crypto:encrypt(k, H.bytes(246, 5))
      assert.is_nil(r)
      assert.matches("too long", msg)
      assert.equal("ERR_INVALID_PARAMETER", code)
      r, msg, code = crypto:encrypt(k, H.bytes(1000, 5))
      assert.is_nil(r)
      assert.equal("string", type(msg))
      assert.equal("ERR_INVALID_PARAMETER", code)
    end)

    it("fails on garbage ciphertext", function()
      local k = key("rsa")
      for _, ct in ipairs { H.bytes(256, 9), H.bytes(255, 9), "", ("\0"):rep(256),
                            H.bytes(512, 9) } do
        local r, msg, code = crypto:decrypt(k.key, ct)
        assert.is_nil(r)
        assert.equal("string", type(msg))
        assert.equal("ERR_INVALID_DATA", code)
      end
      -- A valid ciphertext for another key does not decrypt either.
      local ct = assert(crypto:encrypt(key("rsa2").key, "secret"))
      assert.is_nil(crypto:decrypt(k.key, ct))
      -- openssl agrees that the garbage is garbage.
      local garbage = file("garbage.ct", H.bytes(256, 9))
      assert.is_false((H.try_openssl(("pkeyutl -decrypt -inkey %s -in %s")
                                     :format(q(k.priv), q(garbage)))))
    end)

    it("fails with an EC key, and decrypt with a public-only key", function()
      local ec = key("secp256r1").key
      local r, msg, code = crypto:encrypt(ec, "hello")
      assert.is_nil(r)
      assert.matches("RSA", msg)
      assert.equal("ERR_INVALID_PARAMETER", code)
      r, msg, code = crypto:decrypt(ec, H.bytes(64, 1))
      assert.is_nil(r)
      assert.equal("ERR_INVALID_PARAMETER", code)
      local pub = tls.CryptoKey.new()
      assert(pub:load(key("rsa").pub, true))
      r, msg, code = crypto:decrypt(pub, assert(crypto:encrypt(pub, "x")))
      assert.is_nil(r)
      assert.matches("private key", msg)
      assert.equal("ERR_INVALID_PARAMETER", code)
      r, msg, code = crypto:encrypt(tls.CryptoKey.new(), "x")
      assert.is_nil(r)
      assert.equal("ERR_INVALID_PARAMETER", code)
    end)

    it("raises on wrong argument types", function()
      local k = key("rsa").key
      assert.has_error(function() crypto:encrypt(nil, "x") end)
      assert.has_error(function() crypto:encrypt(k, nil) end)
      assert.has_error(function() crypto:encrypt(k, {}) end)
      assert.has_error(function() crypto:decrypt("key", "x") end)
      assert.has_error(function() crypto:decrypt(k, true) end)
    end)
  end)

  describe("hmac_digest", function()
    local keys = {
      H.bytes(16, 7):sub(1, 5) .. "\0" .. H.bytes(10, 8),  -- binary, with a NUL
      H.bytes(200, 9),                                     -- longer than a block
      "k",
    }
    for _, alg in ipairs { "md5", "sha1", "sha256", "sha512" } do
      it("equals openssl's HMAC-" .. alg:upper(), function()
        local h = HASHES[alg]
        for ki, hkey in ipairs(keys) do
          for _, n in ipairs { 0, 1, 55, 56, 64, 1024 * 1024 } do
            if n < 1024 * 1024 or ki == 1 then
              local msg = H.bytes(n, n + ki)
              local path = file(("hmac-%d-%d.msg"):format(ki, n), msg)
              local want = H.openssl(
                ("dgst -%s -mac HMAC -macopt hexkey:%s -binary %s")
                :format(alg, H.hex(hkey), q(path)))
              local got = crypto:hmac_digest(h[1], hkey, msg)
              assert.equal(h[3], #got)
              assert.equal(H.hex(want), H.hex(got))
            end
          end
        end
      end)
    end

    it("accepts an empty key and raises on bad arguments", function()
      -- RFC 2104 with an empty key: same as a key of zero bytes.
      assert.equal(crypto:hmac_digest(HC.HASH_SHA256, "", "abc"),
                   crypto:hmac_digest(HC.HASH_SHA256, ("\0"):rep(64), "abc"))
      assert.has_error(function() crypto:hmac_digest(4, "k", "m") end)
      assert.has_error(function() crypto:hmac_digest(-1, "k", "m") end)
      assert.has_error(function() crypto:hmac_digest(HC.HASH_SHA256, nil, "m") end)
      assert.has_error(function() crypto:hmac_digest(HC.HASH_SHA256, "k", {}) end)
    end)
  end)

  describe("constant_time_compare", function()
    it("compares equal, different, different-length and empty strings", function()
      local a = H.bytes(100, 1)
      assert.is_true(crypto:constant_time_compare(a, a:sub(1)))
      assert.is_true(crypto:constant_time_compare("", ""))
      assert.is_false(crypto:constant_time_compare(a, a:sub(1, 99) .. "\0"))
      assert.is_false(crypto:constant_time_compare(
        string.char(H.bxor(a:byte(1), 0x80)) .. a:sub(2), a))
      assert.is_false(crypto:constant_time_compare(a, a:sub(1, 99)))
      assert.is_false(crypto:constant_time_compare(a, a .. "\0"))
      assert.is_false(crypto:constant_time_compare("", "\0"))
      assert.is_false(crypto:constant_time_compare("\0", ""))
      assert.is_true(crypto:constant_time_compare("a\0b", "a\0b"))
      assert.is_false(crypto:constant_time_compare("a\0b", "a\0c"))
    end)

    it("raises on non-string arguments", function()
      assert.has_error(function() crypto:constant_time_compare(nil, "") end)
      assert.has_error(function() crypto:constant_time_compare("", {}) end)
      assert.has_error(function() crypto:constant_time_compare(true, true) end)
    end)
  end)

  describe("object", function()
    it("has a tostring and raises after close", function()
      local c = tls.Crypto.new()
      assert.matches("^Crypto", tostring(c))
      getmetatable(c).__close(c)
      getmetatable(c).__close(c)
      assert.matches("closed", tostring(c))
      local ok, err = pcall(c.generate_random_bytes, c, 1)
      assert.is_false(ok)
      assert.matches("attempt to use a closed Crypto", err)
    end)
  end)
end)
