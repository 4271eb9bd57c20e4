-- HashingContext, HMACContext and AESContext, checked against the real
-- `openssl` command on the same inputs (written to temporary files).
local H = require "helpers"
local tls = H.tls

local HashingContext, HMACContext, AESContext =
  tls.HashingContext, tls.HMACContext, tls.AESContext

local MiB = 1048576
local SIZES = { 0, 1, 55, 56, 64, MiB }
local CHUNKS = { 1, 7, 63, 64, 65, 4096 }
local MIXED = { 1, 7, 63, 64, 65, 4096 }      -- cycled: crosses every boundary
local HMAC_KEYS = { 0, 1, 64, 65, 128, 129, 200 }
local AES_SIZES = { 0, 16, 64, MiB }

local ALGS = {
  { name = "MD5",     const = "HASH_MD5",    value = 0, ossl = "md5",    len = 16 },
  { name = "SHA-1",   const = "HASH_SHA1",   value = 1, ossl = "sha1",   len = 20 },
  { name = "SHA-256", const = "HASH_SHA256", value = 2, ossl = "sha256", len = 32 },
  { name = "SHA-512", const = "HASH_SHA512", value = 3, ossl = "sha512", len = 64 },
}

-- Feeds `data` to ctx:update in pieces of `size` bytes (a number), or of the
-- sizes of a list cycled; checks every update returns true.
local function feed(ctx, data, size)
  local i, k, n = 1, 1, #data
  if type(size) == "number" then
    local sub = string.sub
    for j = 1, n, size do
      if ctx:update(sub(data, j, j + size - 1)) ~= true then
        error("update failed at byte " .. j)
      end
    end
    return
  end
  while i <= n do
    local step = size
    if type(size) == "table" then
      step = size[k]
      k = k % #size + 1
    end
    assert(ctx:update(data:sub(i, i + step - 1)) == true, "update failed")
    i = i + step
  end
end

-- Same for AESContext: returns the concatenated output.
local function aes_feed(ctx, data, size)
  local out, i, k, n = {}, 1, 1, #data
  while i <= n do
    local step = size
    if type(size) == "table" then
      step = size[k]
      k = k % #size + 1
    end
    out[#out + 1] = assert(ctx:update(data:sub(i, i + step - 1)))
    i = i + step
  end
  return table.concat(out)
end

-- Asserts two byte strings are equal; on a mismatch the message shows the
-- lengths and, in hex, the first differing bytes (hex of 1 MiB is slow).
local function same(want, got, msg)
  assert.is_string(got, msg)
  assert.are.equal(#want, #got, (msg or "") .. " (length)")
  if want ~= got then
    local i = 1
    while want:byte(i) == got:byte(i) do i = i + 1 end
    local show = function(s) return ("at byte %d: %s"):format(i, H.hex(s:sub(i, i + 31))) end
    assert.are.equal(show(want), show(got), msg)
  end
  assert.is_true(want == got, msg)
end

local function desc(size)
  return type(size) == "table" and "mixed chunks (" .. table.concat(size, ",") .. ")"
                                or "chunks of " .. size
end

-- Inputs: prefixes of one pseudo-random buffer, each written to a file.
local fixture
local function fx()
  if not fixture then
    local dir = H.tmpdir()
    local big = H.bytes(MiB, 4242)
    local f = { dir = dir, data = {}, path = {} }
    local seen = {}
    for _, list in ipairs { SIZES, AES_SIZES } do
      for _, n in ipairs(list) do
        if not seen[n] then
          seen[n] = true
          f.data[n] = big:sub(1, n)
          f.path[n] = H.write(dir .. "/in" .. n, f.data[n])
        end
      end
    end
    fixture = f
  end
  return fixture
end

-- Runs a list of `openssl` argument strings in one shell; fails with the
-- output of the first one that fails.
local function openssl_batch(list)
  local cmds = {}
  for i, args in ipairs(list) do cmds[i] = "openssl " .. args end
  local ok, out = H.run(table.concat(cmds, " && "))
  assert(ok, "openssl failed:\n" .. out)
end

-- openssl's digests (plain, or HMAC with key `key`) of every SIZES input,
-- in one `openssl dgst` call: { [n] = digest }.
local ref_cache = {}
local function refs(alg, key)
  local id = alg.ossl .. ":" .. (key and H.hex(key) or "-")
  if not ref_cache[id] then
    local f = fx()
    local files = {}
    for i, n in ipairs(SIZES) do files[i] = H.q(f.path[n]) end
    local out = f.dir .. "/dgst.out"
    local mac = ""
    if key then
      -- openssl 3 rejects an empty "hexkey:", but takes an empty -hmac.
      mac = #key == 0 and "-hmac ''"
            or "-mac HMAC -macopt hexkey:" .. H.hex(key)
    end
    openssl_batch { ("dgst -%s %s -binary -out %s %s"):format(
      alg.ossl, mac, H.q(out), table.concat(files, " ")) }
    local bin = H.read(out)
    assert(#bin == alg.len * #SIZES, "unexpected openssl dgst output length")
    local t = {}
    for i, n in ipairs(SIZES) do
      t[n] = bin:sub((i - 1) * alg.len + 1, i * alg.len)
    end
    ref_cache[id] = t
  end
  return ref_cache[id]
end

-- openssl's digest of an arbitrary string.
local function ref_of(alg, data)
  local f = fx()
  local path = H.write(f.dir .. "/adhoc", data)
  local out = f.dir .. "/adhoc.out"
  openssl_batch { ("dgst -%s -binary -out %s %s"):format(alg.ossl, H.q(out), H.q(path)) }
  return H.read(out)
end

-- AES keys, IV and openssl's outputs for every case, made in one shell.
local AES_KEY = { [128] = H.bytes(16, 1601), [256] = H.bytes(32, 3201) }
local AES_IV = H.bytes(16, 1699)
local aes_cache
local function aes_ref(bits, mode, dir, n)
  if not aes_cache then
    local f = fx()
    local cmds, outs = {}, {}
    for _, b in ipairs { 128, 256 } do
      for _, m in ipairs { "ecb", "cbc" } do
        for _, d in ipairs { "enc", "dec" } do
          for _, size in ipairs(AES_SIZES) do
            local id = ("%d-%s-%s-%d"):format(b, m, d, size)
            local out = f.dir .. "/aes-" .. id
            outs[id] = out
            cmds[#cmds + 1] = ("enc -aes-%d-%s -nopad %s -K %s %s -in %s -out %s")
              :format(b, m, d == "dec" and "-d" or "-e", H.hex(AES_KEY[b]),
                      m == "cbc" and "-iv " .. H.hex(AES_IV) or "",
                      H.q(f.path[size]), H.q(out))
          end
        end
      end
    end
    openssl_batch(cmds)
    aes_cache = {}
    for id, out in pairs(outs) do aes_cache[id] = H.read(out) end
  end
  return assert(aes_cache[("%d-%s-%s-%d"):format(bits, mode, dir, n)])
end

local function aes_mode(mode, dir)
  return AESContext[("MODE_%s_%s"):format(mode:upper(), dir == "enc" and "ENCRYPT" or "DECRYPT")]
end

describe("hashing", function()
  teardown(function()
    H.cleanup()
    fixture, ref_cache, aes_cache = nil, {}, nil
  end)

  ---------------------------------------------------------------- constants
  describe("constants", function()
    it("HashingContext and HMACContext carry HASH_MD5=0, HASH_SHA1=1, HASH_SHA256=2, HASH_SHA512=3", function()
      for _, alg in ipairs(ALGS) do
        assert.are.equal(alg.value, HashingContext[alg.const])
        assert.are.equal(alg.value, HMACContext[alg.const])
        assert.is_true(H.is_integer(HashingContext[alg.const]))
      end
    end)

    it("AESContext carries MODE_ECB_ENCRYPT=0, MODE_ECB_DECRYPT=1, MODE_CBC_ENCRYPT=2, MODE_CBC_DECRYPT=3", function()
      assert.are.equal(0, AESContext.MODE_ECB_ENCRYPT)
      assert.are.equal(1, AESContext.MODE_ECB_DECRYPT)
      assert.are.equal(2, AESContext.MODE_CBC_ENCRYPT)
      assert.are.equal(3, AESContext.MODE_CBC_DECRYPT)
    end)
  end)

  ----------------------------------------------------------- HashingContext
  describe("HashingContext", function()
    for _, alg in ipairs(ALGS) do
      for _, n in ipairs(SIZES) do
        it(("%s of %d bytes in one update equals openssl dgst -%s"):format(alg.name, n, alg.ossl), function()
          local h = HashingContext.new()
          assert.is_true(h:start(HashingContext[alg.const]))
          assert.is_true(h:update(fx().data[n]))
          local d = h:finish()
          assert.are.equal(alg.len, #d)
          assert.are.equal(H.hex(refs(alg)[n]), H.hex(d))
        end)
      end

      for _, n in ipairs(SIZES) do
        if n > 1 then
          it(("%s of %d bytes in many updates (chunks %s, mixed) equals openssl"):format(
               alg.name, n, table.concat(CHUNKS, ",")), function()
            local data, want = fx().data[n], H.hex(refs(alg)[n])
            local h = HashingContext.new()
            local plans = { MIXED }
            for _, c in ipairs(CHUNKS) do plans[#plans + 1] = c end
            for _, plan in ipairs(plans) do
              assert.is_true(h:start(alg.value))
              feed(h, data, plan)
              assert.are.equal(want, H.hex(h:finish()), desc(plan))
            end
          end)
        end
      end

      it(("%s: one context restarted for every input gives openssl's digests"):format(alg.name), function()
        local h = HashingContext.new()
        for round = 1, 2 do
          for _, n in ipairs(SIZES) do
            assert.is_true(h:start(alg.value))
            assert.is_true(h:update(fx().data[n]))
            assert.are.equal(H.hex(refs(alg)[n]), H.hex(h:finish()),
                             ("round %d, %d bytes"):format(round, n))
          end
        end
      end)
    end

    it("empty updates do not change the digest", function()
      local alg = ALGS[3]
      local h = HashingContext.new()
      h:start(alg.value)
      assert.is_true(h:update(""))
      assert.is_true(h:update(fx().data[55]))
      assert.is_true(h:update(""))
      assert.are.equal(H.hex(refs(alg)[55]), H.hex(h:finish()))
    end)

    it("a context can switch hash type between runs", function()
      local h = HashingContext.new()
      for _, alg in ipairs(ALGS) do
        h:start(alg.value)
        h:update(fx().data[64])
        assert.are.equal(H.hex(refs(alg)[64]), H.hex(h:finish()), alg.name)
      end
    end)

    it("start() twice without finish() returns nil, message, ERR_ALREADY_IN_USE and keeps the first run", function()
      local sha256, md5 = ALGS[3], ALGS[1]
      local h = HashingContext.new()
      assert.is_true(h:start(sha256.value))
      h:update("abc")
      local ok, msg, code = h:start(md5.value)
      assert.is_nil(ok)
      assert.is_string(msg)
      assert.matches("HashingContext", msg)
      assert.are.equal("ERR_ALREADY_IN_USE", code)
      h:update("def")
      assert.are.equal(H.hex(ref_of(sha256, "abcdef")), H.hex(h:finish()))
    end)

    it("update() before start() returns nil, message, ERR_UNCONFIGURED", function()
      local h = HashingContext.new()
      local ok, msg, code = h:update("abc")
      assert.is_nil(ok)
      assert.is_string(msg)
      assert.are.equal("ERR_UNCONFIGURED", code)
    end)

    it("finish() before start() returns nil, message, ERR_UNCONFIGURED", function()
      local h = HashingContext.new()
      local ok, msg, code = h:finish()
      assert.is_nil(ok)
      assert.is_string(msg)
      assert.are.equal("ERR_UNCONFIGURED", code)
    end)

    it("finish() leaves the context idle: a second finish() or update() is ERR_UNCONFIGURED", function()
      local h = HashingContext.new()
      h:start(0)
      assert.is_string(h:finish())
      assert.are.equal("ERR_UNCONFIGURED", select(3, h:finish()))
      assert.are.equal("ERR_UNCONFIGURED", select(3, h:update("x")))
    end)

    it("start() with an unknown hash type (99, -1, 4) raises and leaves the context usable", function()
      local h = HashingContext.new()
      for _, t in ipairs { 99, -1, 4 } do
        assert.error_matches(function() h:start(t) end, "unknown hash type", nil, true)
      end
      assert.is_true(h:start(ALGS[2].value))
      h:update(fx().data[56])
      assert.are.equal(H.hex(refs(ALGS[2])[56]), H.hex(h:finish()))
    end)

    it("start() with a wrong argument type raises", function()
      local h = HashingContext.new()
      for _, v in ipairs { {}, true, false, 2.5, "sha256" } do
        assert.has_error(function() h:start(v) end)
      end
      assert.has_error(function() h:start() end)
      assert.has_error(function() h:start(nil) end)
    end)

    it("update() with a table, boolean or nil raises", function()
      local h = HashingContext.new()
      h:start(2)
      for _, v in ipairs { {}, true, false } do
        assert.error_matches(function() h:update(v) end, "string expected", nil, true)
      end
      assert.error_matches(function() h:update(nil) end, "string expected", nil, true)
      assert.error_matches(function() h:update() end, "string expected", nil, true)
    end)

    it("methods called on something other than a HashingContext raise", function()
      local h = HashingContext.new()
      assert.has_error(function() h.start({}, 0) end)
      assert.has_error(function() h.update(HMACContext.new(), "x") end)
      assert.has_error(function() h.finish(AESContext.new()) end)
    end)

    it("every method on a closed HashingContext raises 'attempt to use a closed HashingContext'", function()
      local h = HashingContext.new()
      h:start(2)
      getmetatable(h).__close(h)
      for _, call in ipairs {
        function() h:start(2) end,
        function() h:update("x") end,
        function() h:finish() end,
      } do
        assert.error_matches(call, "attempt to use a closed HashingContext", nil, true)
      end
    end)

    -- (a <close> variable: spec/90-lua54_close_spec.lua)

    it("closing twice is harmless", function()
      local h = HashingContext.new()
      local close = getmetatable(h).__close
      close(h)
      assert.has_no_error(function() close(h) end)
      assert.has_no_error(function() getmetatable(h).__gc(h) end)
      assert.matches("(closed)", tostring(h), nil, true)
    end)

    it("tostring names the class and its state, live and closed", function()
      local h = HashingContext.new()
      local s = tostring(h)
      assert.matches("HashingContext", s, nil, true)
      assert.not_matches("closed", s, nil, true)
      h:start(2)
      assert.matches("SHA%-?256", tostring(h))
      h:finish()
      assert.not_matches("SHA", tostring(h), nil, true)
      getmetatable(h).__close(h)
      assert.matches("HashingContext", tostring(h), nil, true)
      assert.matches("(closed)", tostring(h), nil, true)
    end)
  end)

  -------------------------------------------------------------- HMACContext
  describe("HMACContext", function()
    for _, alg in ipairs(ALGS) do
      for _, klen in ipairs(HMAC_KEYS) do
        local key = H.bytes(klen, 700 + klen)

        it(("HMAC-%s with a %d-byte key, one update per input, equals openssl"):format(alg.name, klen), function()
          local want = refs(alg, key)
          local m = HMACContext.new()
          for _, n in ipairs(SIZES) do
            assert.is_true(m:start(HMACContext[alg.const], key))
            assert.is_true(m:update(fx().data[n]))
            local d = m:finish()
            assert.are.equal(alg.len, #d)
            assert.are.equal(H.hex(want[n]), H.hex(d), n .. " bytes")
          end
        end)

        it(("HMAC-%s with a %d-byte key, many updates per input, equals openssl"):format(alg.name, klen), function()
          local want = refs(alg, key)
          local m = HMACContext.new()
          for _, n in ipairs(SIZES) do
            local plans = { MIXED }
            for _, c in ipairs(CHUNKS) do
              -- byte-at-a-time over 1 MiB is covered by HashingContext
              -- (and by the mixed plan); here they would only cost time.
              if n < MiB or c > 1 then plans[#plans + 1] = c end
            end
            for _, plan in ipairs(plans) do
              assert.is_true(m:start(alg.value, key))
              feed(m, fx().data[n], plan)
              assert.are.equal(H.hex(want[n]), H.hex(m:finish()),
                               ("%d bytes, %s"):format(n, desc(plan)))
            end
          end
        end)
      end
    end

    it("one context restarted with different hashes and keys gives openssl's MACs", function()
      local m = HMACContext.new()
      for _, alg in ipairs(ALGS) do
        for _, klen in ipairs { 200, 0, 65 } do
          local key = H.bytes(klen, 700 + klen)
          assert.is_true(m:start(alg.value, key))
          m:update(fx().data[55])
          assert.are.equal(H.hex(refs(alg, key)[55]), H.hex(m:finish()),
                           ("%s, %d-byte key"):format(alg.name, klen))
        end
      end
    end)

    it("two HMAC contexts running at once do not interfere", function()
      local alg, key = ALGS[3], H.bytes(64, 764)
      local m1, m2 = HMACContext.new(), HMACContext.new()
      m1:start(alg.value, key)
      m2:start(alg.value, H.bytes(65, 765))
      m1:update(fx().data[64]); m2:update(fx().data[64])
      assert.are.equal(H.hex(refs(alg, key)[64]), H.hex(m1:finish()))
      assert.are.equal(H.hex(refs(alg, H.bytes(65, 765))[64]), H.hex(m2:finish()))
    end)

    it("start() twice without finish() returns nil, message, ERR_ALREADY_IN_USE", function()
      local m = HMACContext.new()
      assert.is_true(m:start(2, "key"))
      local ok, msg, code = m:start(2, "other")
      assert.is_nil(ok)
      assert.is_string(msg)
      assert.matches("HMACContext", msg)
      assert.are.equal("ERR_ALREADY_IN_USE", code)
      assert.are.equal(32, #m:finish())
    end)

    it("update() before start() returns nil, message, ERR_UNCONFIGURED", function()
      local ok, msg, code = HMACContext.new():update("abc")
      assert.is_nil(ok)
      assert.is_string(msg)
      assert.are.equal("ERR_UNCONFIGURED", code)
    end)

    it("finish() before start() returns nil, message, ERR_UNCONFIGURED", function()
      local ok, msg, code = HMACContext.new():finish()
      assert.is_nil(ok)
      assert.is_string(msg)
      assert.are.equal("ERR_UNCONFIGURED", code)
    end)

    it("finish() leaves the context idle: update() after it is ERR_UNCONFIGURED", function()
      local m = HMACContext.new()
      m:start(1, "k")
      assert.are.equal(20, #m:finish())
      assert.are.equal("ERR_UNCONFIGURED", select(3, m:update("x")))
      assert.are.equal("ERR_UNCONFIGURED", select(3, m:finish()))
    end)

    it("start() with an unknown hash type (99, -1) raises", function()
      local m = HMACContext.new()
      assert.error_matches(function() m:start(99, "key") end, "unknown hash type", nil, true)
      assert.error_matches(function() m:start(-1, "key") end, "unknown hash type", nil, true)
      assert.is_true(m:start(0, "key"))
    end)

    it("start() without a key, or with a table/boolean key, raises", function()
      local m = HMACContext.new()
      assert.has_error(function() m:start(2) end)
      assert.has_error(function() m:start(2, nil) end)
      assert.has_error(function() m:start(2, {}) end)
      assert.has_error(function() m:start(2, true) end)
      assert.has_error(function() m:start({}, "key") end)
    end)

    it("update() with a table, boolean or nil raises", function()
      local m = HMACContext.new()
      m:start(2, "key")
      for _, v in ipairs { {}, true } do
        assert.error_matches(function() m:update(v) end, "string expected", nil, true)
      end
      assert.error_matches(function() m:update(nil) end, "string expected", nil, true)
    end)

    it("every method on a closed HMACContext raises 'attempt to use a closed HMACContext'", function()
      local m = HMACContext.new()
      m:start(2, "key")
      getmetatable(m).__close(m)
      for _, call in ipairs {
        function() m:start(2, "key") end,
        function() m:update("x") end,
        function() m:finish() end,
      } do
        assert.error_matches(call, "attempt to use a closed HMACContext", nil, true)
      end
    end)

    -- (a <close> variable: spec/90-lua54_close_spec.lua)
  end)

  --------------------------------------------------------------- AESContext
  describe("AESContext", function()
    for _, bits in ipairs { 128, 256 } do
      for _, mode in ipairs { "ecb", "cbc" } do
        for _, dir in ipairs { "enc", "dec" } do
          local what = ("AES-%d-%s %s"):format(bits, mode:upper(), dir == "enc" and "encrypt" or "decrypt")

          for _, n in ipairs(AES_SIZES) do
            it(("%s of %d bytes in one update equals openssl enc -nopad%s"):format(
                 what, n, dir == "dec" and " -d" or ""), function()
              local a = AESContext.new()
              assert.is_true(a:start(aes_mode(mode, dir), AES_KEY[bits],
                                     mode == "cbc" and AES_IV or nil))
              local out = a:update(fx().data[n])
              assert.are.equal(n, #out)
              same(aes_ref(bits, mode, dir, n), out)
              assert.is_true(a:finish())
            end)
          end

          it(("%s of 1 MiB over many updates equals one update and openssl"):format(what), function()
            local want = aes_ref(bits, mode, dir, MiB)
            local a = AESContext.new()
            for _, plan in ipairs { 16, 48, 4096, 65536, { 16, 32, 4080, 64, 112 } } do
              assert.is_true(a:start(aes_mode(mode, dir), AES_KEY[bits],
                                     mode == "cbc" and AES_IV or nil))
              same(want, aes_feed(a, fx().data[MiB], plan), desc(plan))
              assert.is_true(a:finish())
            end
          end)
        end

        it(("AES-%d-%s: decrypt(encrypt(x)) == x"):format(bits, mode:upper()), function()
          local a = AESContext.new()
          local iv = mode == "cbc" and AES_IV or nil
          for _, n in ipairs(AES_SIZES) do
            local x = fx().data[n]
            a:start(aes_mode(mode, "enc"), AES_KEY[bits], iv)
            local c = a:update(x)
            a:finish()
            if n > 0 then assert.are_not.equal(x, c) end
            a:start(aes_mode(mode, "dec"), AES_KEY[bits], iv)
            local back = aes_feed(a, c, 64)
            a:finish()
            assert.is_true(back == x, n .. " bytes did not round-trip")
          end
        end)
      end

      it(("AES-%d-CBC encrypt: get_iv_state() is the IV at first, then the last ciphertext block"):format(bits), function()
        local a = AESContext.new()
        a:start(AESContext.MODE_CBC_ENCRYPT, AES_KEY[bits], AES_IV)
        assert.are.equal(H.hex(AES_IV), H.hex(a:get_iv_state()))
        local want = aes_ref(bits, "cbc", "enc", MiB)
        local data, got = fx().data[MiB], 0
        for _, step in ipairs { 16, 48, 4096, 65536 } do
          local out = a:update(data:sub(got + 1, got + step))
          got = got + step
          assert.are.equal(H.hex(want:sub(got - 15, got)), H.hex(out:sub(-16)))
          assert.are.equal(H.hex(want:sub(got - 15, got)), H.hex(a:get_iv_state()),
                           "after " .. got .. " bytes")
        end
        a:update("")
        assert.are.equal(H.hex(want:sub(got - 15, got)), H.hex(a:get_iv_state()))
        a:finish()
      end)

      it(("AES-%d-CBC decrypt: get_iv_state() is the IV at first, then the last input block"):format(bits), function()
        local a = AESContext.new()
        a:start(AESContext.MODE_CBC_DECRYPT, AES_KEY[bits], AES_IV)
        assert.are.equal(H.hex(AES_IV), H.hex(a:get_iv_state()))
        local want = aes_ref(bits, "cbc", "dec", MiB)
        local data, got = fx().data[MiB], 0
        for _, step in ipairs { 16, 48, 4096, 65536 } do
          local out = a:update(data:sub(got + 1, got + step))
          same(want:sub(got + 1, got + step), out)
          got = got + step
          assert.are.equal(H.hex(data:sub(got - 15, got)), H.hex(a:get_iv_state()),
                           "after " .. got .. " bytes")
        end
        a:finish()
      end)

      it(("AES-%d-CBC: a new context started with get_iv_state() continues the stream"):format(bits), function()
        local data, want = fx().data[MiB], aes_ref(bits, "cbc", "enc", MiB)
        local a1, a2 = AESContext.new(), AESContext.new()
        a1:start(AESContext.MODE_CBC_ENCRYPT, AES_KEY[bits], AES_IV)
        local first = a1:update(data:sub(1, 4096))
        a2:start(AESContext.MODE_CBC_ENCRYPT, AES_KEY[bits], a1:get_iv_state())
        local second = a2:update(data:sub(4097, 8192))
        same(want:sub(1, 8192), first .. second)
      end)
    end

    it("finish() then start() again, in another mode and key size, gives openssl's output", function()
      local a = AESContext.new()
      local seq = {
        { 128, "ecb", "enc" }, { 256, "cbc", "dec" }, { 128, "cbc", "enc" },
        { 256, "ecb", "dec" }, { 256, "cbc", "enc" }, { 128, "ecb", "dec" },
        { 128, "cbc", "dec" }, { 256, "ecb", "enc" },
      }
      for _, c in ipairs(seq) do
        local bits, mode, dir = c[1], c[2], c[3]
        assert.is_true(a:start(aes_mode(mode, dir), AES_KEY[bits],
                               mode == "cbc" and AES_IV or nil))
        assert.are.equal(H.hex(aes_ref(bits, mode, dir, 64)), H.hex(a:update(fx().data[64])),
                         table.concat(c, "-"))
        assert.is_true(a:finish())
      end
    end)

    it("CBC starts from the given IV again after finish(), not from the carried state", function()
      local a = AESContext.new()
      local want = H.hex(aes_ref(128, "cbc", "enc", 64))
      for _ = 1, 3 do
        a:start(AESContext.MODE_CBC_ENCRYPT, AES_KEY[128], AES_IV)
        assert.are.equal(want, H.hex(a:update(fx().data[64])))
        a:finish()
      end
    end)

    it("a rejected update() leaves the CBC stream where it was", function()
      local a = AESContext.new()
      local data, want = fx().data[64], aes_ref(256, "cbc", "enc", 64)
      a:start(AESContext.MODE_CBC_ENCRYPT, AES_KEY[256], AES_IV)
      local first = a:update(data:sub(1, 32))
      assert.has_error(function() a:update(data:sub(33, 40)) end)
      local second = a:update(data:sub(33, 64))
      assert.are.equal(H.hex(want), H.hex(first .. second))
    end)

    it("start() twice without finish() returns nil, message, ERR_ALREADY_IN_USE", function()
      local a = AESContext.new()
      assert.is_true(a:start(AESContext.MODE_ECB_ENCRYPT, AES_KEY[128]))
      local ok, msg, code = a:start(AESContext.MODE_ECB_DECRYPT, AES_KEY[256])
      assert.is_nil(ok)
      assert.is_string(msg)
      assert.matches("AESContext", msg)
      assert.are.equal("ERR_ALREADY_IN_USE", code)
      -- still the first run: ECB encrypt with the 128-bit key
      assert.are.equal(H.hex(aes_ref(128, "ecb", "enc", 16)), H.hex(a:update(fx().data[16])))
    end)

    it("update() before start() returns nil, message, ERR_UNCONFIGURED", function()
      local ok, msg, code = AESContext.new():update(("\0"):rep(16))
      assert.is_nil(ok)
      assert.is_string(msg)
      assert.are.equal("ERR_UNCONFIGURED", code)
    end)

    it("update() after finish() returns nil, message, ERR_UNCONFIGURED", function()
      local a = AESContext.new()
      a:start(AESContext.MODE_ECB_ENCRYPT, AES_KEY[128])
      assert.is_true(a:finish())
      assert.are.equal("ERR_UNCONFIGURED", select(3, a:update(("\0"):rep(16))))
    end)

    it("get_iv_state() in ECB mode returns nil, message, ERR_UNCONFIGURED", function()
      local a = AESContext.new()
      for _, mode in ipairs { AESContext.MODE_ECB_ENCRYPT, AESContext.MODE_ECB_DECRYPT } do
        a:start(mode, AES_KEY[256])
        local ok, msg, code = a:get_iv_state()
        assert.is_nil(ok)
        assert.is_string(msg)
        assert.are.equal("ERR_UNCONFIGURED", code)
        a:finish()
      end
    end)

    it("get_iv_state() before start() returns nil, message, ERR_UNCONFIGURED", function()
      local ok, msg, code = AESContext.new():get_iv_state()
      assert.is_nil(ok)
      assert.is_string(msg)
      assert.are.equal("ERR_UNCONFIGURED", code)
    end)

    it("get_iv_state() after finish() of a CBC run returns ERR_UNCONFIGURED", function()
      local a = AESContext.new()
      a:start(AESContext.MODE_CBC_ENCRYPT, AES_KEY[128], AES_IV)
      a:finish()
      assert.are.equal("ERR_UNCONFIGURED", select(3, a:get_iv_state()))
    end)

    it("start() with an unknown mode (4, -1, 99) raises", function()
      local a = AESContext.new()
      for _, m in ipairs { 4, -1, 99 } do
        assert.error_matches(function() a:start(m, AES_KEY[128], AES_IV) end,
                             "out of range", nil, true)
      end
      assert.is_true(a:start(AESContext.MODE_ECB_ENCRYPT, AES_KEY[128]))
    end)

    it("start() with a key that is not 16 or 32 bytes (0, 15, 17, 24, 31, 33) raises", function()
      local a = AESContext.new()
      for _, n in ipairs { 0, 15, 17, 24, 31, 33 } do
        assert.error_matches(function() a:start(AESContext.MODE_ECB_ENCRYPT, ("k"):rep(n)) end,
                             "16 or 32 bytes", nil, true)
        assert.error_matches(function() a:start(AESContext.MODE_CBC_DECRYPT, ("k"):rep(n), AES_IV) end,
                             "16 or 32 bytes", nil, true)
      end
      assert.is_true(a:start(AESContext.MODE_ECB_ENCRYPT, AES_KEY[256]))
    end)

    it("CBC start() with a missing or wrong-length IV raises", function()
      local a = AESContext.new()
      for _, mode in ipairs { AESContext.MODE_CBC_ENCRYPT, AESContext.MODE_CBC_DECRYPT } do
        assert.error_matches(function() a:start(mode, AES_KEY[128]) end, "IV", nil, true)
        assert.error_matches(function() a:start(mode, AES_KEY[128], nil) end, "IV", nil, true)
        for _, n in ipairs { 0, 1, 15, 17, 32 } do
          assert.error_matches(function() a:start(mode, AES_KEY[256], ("i"):rep(n)) end,
                               "IV", nil, true)
        end
      end
      assert.is_true(a:start(AESContext.MODE_CBC_ENCRYPT, AES_KEY[128], AES_IV))
    end)

    it("update() with a size that is not a multiple of 16 raises (no padding)", function()
      local a = AESContext.new()
      for _, mode in ipairs { 0, 1, 2, 3 } do
        a:start(mode, AES_KEY[128], AES_IV)
        for _, n in ipairs { 1, 15, 17, 31, 65 } do
          assert.error_matches(function() a:update(("x"):rep(n)) end, "multiple of 16", nil, true)
        end
        a:finish()
      end
    end)

    it("start() with wrong argument types raises", function()
      local a = AESContext.new()
      assert.has_error(function() a:start() end)
      assert.has_error(function() a:start({}, AES_KEY[128]) end)
      assert.has_error(function() a:start(true, AES_KEY[128]) end)
      assert.has_error(function() a:start(0.5, AES_KEY[128]) end)
      assert.has_error(function() a:start(0) end)
      assert.has_error(function() a:start(0, nil) end)
      assert.has_error(function() a:start(0, {}) end)
      assert.has_error(function() a:start(0, false) end)
      assert.has_error(function() a:start(2, AES_KEY[128], {}) end)
      assert.has_error(function() a:start(2, AES_KEY[128], true) end)
      assert.is_true(a:start(2, AES_KEY[128], AES_IV))
    end)

    it("update() with a table, boolean or nil raises", function()
      local a = AESContext.new()
      a:start(0, AES_KEY[128])
      for _, v in ipairs { {}, true } do
        assert.error_matches(function() a:update(v) end, "string expected", nil, true)
      end
      assert.error_matches(function() a:update(nil) end, "string expected", nil, true)
      assert.error_matches(function() a:update() end, "string expected", nil, true)
    end)

    it("every method on a closed AESContext raises 'attempt to use a closed AESContext'", function()
      local a = AESContext.new()
      a:start(AESContext.MODE_CBC_ENCRYPT, AES_KEY[128], AES_IV)
      getmetatable(a).__close(a)
      for _, call in ipairs {
        function() a:start(0, AES_KEY[128]) end,
        function() a:update(("x"):rep(16)) end,
        function() a:get_iv_state() end,
        function() a:finish() end,
      } do
        assert.error_matches(call, "attempt to use a closed AESContext", nil, true)
      end
    end)

    -- (a <close> variable: spec/90-lua54_close_spec.lua)
  end)
end)
