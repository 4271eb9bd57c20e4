-- Regression specs for the key and trust-store findings of the security
-- review (issue 9): key files that ask for endless key derivation (#9),
-- trust picked up from the current directory (#12), and a password given
-- to key:save() that was silently ignored (#13).
local H = require "helpers"
local tls = H.tls

local V3 = tls.mbedtls_version:match("^3") ~= nil

describe("issue 9 #9: key files cannot ask for unbounded key derivation", function()
  after_each(H.cleanup)

  -- Every encrypted-PKCS#8 scheme OpenSSL writes, through every path of
  -- each mbedtls version: PBES2 with AES (tlspeer's own decoder on 2.28,
  -- mbedtls' on 3.6), PBES2 with 3DES and PKCS#12 PBE (mbedtls' own).
  local schemes = { "-v2 aes256", "-v2 des3", "-v1 PBE-SHA1-3DES" }

  for _, scheme in ipairs(schemes) do
    it("refuses 1,500,000 iterations (" .. scheme .. ") with 'iteration count too high', at once", function()
      local dir = H.tmpdir()
      local path = dir .. "/key.pem"
      H.openssl(("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s"):format(H.q(dir .. "/plain.pem")))
      H.openssl(("pkcs8 -topk8 %s -iter 1500000 -passout pass:pw -in %s -out %s")
        :format(scheme, H.q(dir .. "/plain.pem"), H.q(path)))
      local k = tls.CryptoKey.new()
      local t0 = H.now()
      local ok, msg, code = k:load(path, false, "pw")
      local elapsed = H.now() - t0
      assert.is_nil(ok)
      assert.equal("ERR_INVALID_DATA", code)
      assert.matches("iteration count too high", msg)
      assert.matches("1500000", msg)
      -- Same from a string, and with a wrong password (no derivation either).
      ok, msg = tls.CryptoKey.new():load_from_string(H.read(path), false, "wrong")
      assert.is_nil(ok)
      assert.matches("iteration count too high", msg)
      io.stderr:write(("\n[24] %s, 1.5M iterations refused in %.3f s\n"):format(scheme, elapsed))
    end)

    it("still loads a key with 100,000 iterations (" .. scheme .. ")", function()
      local dir = H.tmpdir()
      local path = dir .. "/key.pem"
      H.openssl(("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s"):format(H.q(dir .. "/plain.pem")))
      H.openssl(("pkcs8 -topk8 %s -iter 100000 -passout pass:pw -in %s -out %s")
        :format(scheme, H.q(dir .. "/plain.pem"), H.q(path)))
      local k = tls.CryptoKey.new()
      assert.is_true(k:load(path, false, "pw"))
      assert.equal("ec", k:get_type())
    end)
  end

  it("refuses an iteration count beyond 2^31 (DER edited by hand)", function()
    local dir = H.tmpdir()
    H.openssl(("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s"):format(H.q(dir .. "/plain.pem")))
    H.openssl(("pkcs8 -topk8 -v2 aes256 -iter 2048 -passout pass:pw -outform DER -in %s -out %s")
      :format(H.q(dir .. "/plain.pem"), H.q(dir .. "/k.der")))
    local der = H.read(dir .. "/k.der")
    -- The count is "02 02 08 00"; make it 2^31 - 1 (02 04 7f ff ff ff)
    -- and fix the lengths of the four SEQUENCEs around it (+2 each).
    local i = der:find("\2\2\8\0", 1, true)
    assert.truthy(i)
    local patched = der:sub(1, i - 1) .. "\2\4\127\255\255\255" .. der:sub(i + 4)
    local function bump(s, at)   -- a SEQUENCE header with a one-byte or 0x81/0x82 length
      local b = s:byte(at + 1)
      if b < 0x80 then return s:sub(1, at) .. string.char(b + 2) .. s:sub(at + 2) end
      if b == 0x81 then return s:sub(1, at + 1) .. string.char(s:byte(at + 2) + 2) .. s:sub(at + 3) end
      local n = s:byte(at + 2) * 256 + s:byte(at + 3) + 2
      return s:sub(1, at + 1) .. H.u16be(n) .. s:sub(at + 4)
    end
    -- Outer SEQUENCE, AlgorithmIdentifier, PBES2-params, KDF, PBKDF2-params:
    -- every SEQUENCE that starts before the count and ends after it.
    local starts, pos = {}, 1
    local function walk(s, from, to)
      local p = from
      while p < to do
        local tag, b = s:byte(p), s:byte(p + 1)
        local len, hl
        if b < 0x80 then len, hl = b, 2
        elseif b == 0x81 then len, hl = s:byte(p + 2), 3
        else len, hl = s:byte(p + 2) * 256 + s:byte(p + 3), 4 end
        if tag == 0x30 and p < i and p + hl + len > i then
          starts[#starts + 1] = p
          walk(s, p + hl, p + hl + len)
        end
        p = p + hl + len
      end
    end
    walk(der, pos, #der + 1)
    assert.is_true(#starts >= 4)
    table.sort(starts, function(a, b) return a > b end)
    for _, at in ipairs(starts) do patched = bump(patched, at) end
    local ok, msg = tls.CryptoKey.new():load_from_string(patched, false, "pw")
    assert.is_nil(ok)
    assert.matches("iteration count too high", msg)
  end)
end)

describe("issue 9 #12: trust never comes from the current directory", function()
  after_each(H.cleanup)
  -- The build under test, as an absolute cpath entry.
  local root = select(2, H.run("pwd")):gsub("%s+$", "")
  local cpath = package.cpath:match("^([^;]+)")
  if cpath:sub(1, 1) ~= "/" then cpath = root .. "/" .. cpath end

  it("an embedded Lua layer (not loaded from a file) does not trust ./ca-certificates.crt", function()
    local dir = H.tmpdir()
    -- A CA in the current directory, and a server certificate it signed.
    local crypto = tls.Crypto.new()
    local cakey = assert(crypto:generate_ec())
    local ca = assert(crypto:generate_self_signed_certificate(cakey, "CN=planted CA", nil, nil, { ca = true }))
    assert(ca:save(dir .. "/ca-certificates.crt"))
    local code = ([[
      package.path = %q .. "/lua/?.lua;" .. %q .. "/lua/?/init.lua;" .. package.path
      package.cpath = %q .. ";" .. package.cpath
      local f = assert(io.open(%q .. "/lua/tlspeer/init.lua"))
      local src = f:read("*a"); f:close()
      local tls = assert((loadstring or load)(src, "=embedded tlspeer"))("tlspeer")
      require("tlspeer.core")._set_system_bundles {}
      local src, msg = tls.get_certificate_bundle_source()
      print("source", tostring(src), tostring(msg))
      print("client", tls.TLSOptions.client())
    ]]):format(root, root, cpath, root)
    local ok, out = H.run(("cd %s && env -u SSL_CERT_FILE -u SSL_CERT_DIR %s -e %s")
      :format(H.q(dir), H.LUA, H.q(code)))
    assert.is_true(ok, out)
    assert.not_matches("ca%-certificates%.crt", out:match("source[^\n]*") or "")
    assert.matches("source\tnil\tno CA bundle found", out)
    assert.matches("client\tnil", out)
  end)

  it("a Lua layer loaded by a relative path keeps an absolute bundle path after chdir", function()
    local code = ([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = %q .. ";" .. package.cpath
      local tls = require "tlspeer"
      require("tlspeer.core")._set_system_bundles {}
      print("source", tls.get_certificate_bundle_source())
    ]]):format(cpath)
    local ok, out = H.run(("env -u SSL_CERT_FILE -u SSL_CERT_DIR %s -e %s"):format(H.LUA, H.q(code)))
    assert.is_true(ok, out)
    local src = out:match("source\t([^\n]*)")
    assert.equal(root .. "/certs/ca-certificates.crt", src)
  end)
end)

describe("issue 9 #13: key:save() with a password encrypts", function()
  after_each(H.cleanup)
  local crypto = tls.Crypto.new()

  for _, gen in ipairs { { "RSA 2048", function() return crypto:generate_rsa(2048) end },
                         { "EC P-384", function() return crypto:generate_ec("secp384r1") end } } do
    it("writes encrypted PKCS#8 (PBES2, AES-256) that openssl and tlspeer read back (" .. gen[1] .. ")", function()
      local key = assert(gen[2]())
      local dir = H.tmpdir()
      local path = dir .. "/k.pem"
      assert.is_true(key:save(path, false, "s3cret pass"))
      assert.equal("600", H.mode(path))
      local pem = H.read(path)
      assert.matches("^%-%-%-%-%-BEGIN ENCRYPTED PRIVATE KEY%-%-%-%-%-", pem)
      assert.not_matches("BEGIN [RE]*C? ?PRIVATE KEY", pem:gsub("ENCRYPTED PRIVATE KEY", ""))
      -- OpenSSL decrypts it, and it is the same key.
      local out = H.openssl(("pkcs8 -in %s -passin pass:%s -topk8 -nocrypt"):format(H.q(path), H.q("s3cret pass")))
      local info = H.openssl(("asn1parse -in %s"):format(H.q(path)))
      assert.matches("PBES2", info)
      assert.matches("PBKDF2", info)
      assert.matches("aes%-256%-cbc", info)
      assert.matches("hmacWithSHA256", info)
      local back = tls.CryptoKey.new()
      assert.is_true(back:load_from_string(out))
      assert.equal(key:save_to_string(), back:save_to_string())
      -- tlspeer reads it with the password, and says what is wrong without.
      local k2 = tls.CryptoKey.new()
      assert.is_true(k2:load(path, false, "s3cret pass"))
      assert.equal(key:save_to_string(), k2:save_to_string())
      local ok, msg, code = tls.CryptoKey.new():load(path)
      assert.is_nil(ok)
      assert.equal("ERR_UNAUTHORIZED", code)
      assert.matches("encrypted", msg)
      ok, msg, code = tls.CryptoKey.new():load(path, false, "wrong")
      assert.is_nil(ok)
      assert.equal("ERR_UNAUTHORIZED", code)
    end)
  end

  it("save_to_string(false, password) encrypts too; a fresh salt and IV each time", function()
    local key = assert(crypto:generate_ec())
    local a = assert(key:save_to_string(false, "pw"))
    local b = assert(key:save_to_string(false, "pw"))
    assert.matches("BEGIN ENCRYPTED PRIVATE KEY", a)
    assert.not_equal(a, b)
    local k = tls.CryptoKey.new()
    assert.is_true(k:load_from_string(a, false, "pw"))
    assert.equal(key:save_to_string(), k:save_to_string())
  end)

  it("raises for a password with public_only = true, an empty password or a wrong type", function()
    local key = assert(crypto:generate_ec())
    assert.has_error(function() key:save("/tmp/x", true, "pw") end)
    assert.has_error(function() key:save_to_string(true, "pw") end)
    assert.has_error(function() key:save_to_string(false, "") end)
    assert.has_error(function() key:save_to_string(false, {}) end)
  end)
end)
