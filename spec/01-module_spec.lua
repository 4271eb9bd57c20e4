-- The module table: classes, constants, versions, and a clean global space.
local H = require "helpers"
local tls = H.tls

describe("the tlspeer module", function()
  it("exposes the crypto classes as tables with new()", function()
    for _, name in ipairs { "Crypto", "CryptoKey", "X509Certificate",
                            "HashingContext", "HMACContext", "AESContext" } do
      assert.is_table(tls[name], name)
      assert.is_function(tls[name].new, name)
      local obj = tls[name].new()
      assert.equal("userdata", type(obj))
      assert.matches("^" .. name .. " %(", tostring(obj))
    end
  end)

  it("carries Godot's enum values", function()
    assert.same({ 0, 1, 2, 3 }, { tls.HashingContext.HASH_MD5, tls.HashingContext.HASH_SHA1,
                                  tls.HashingContext.HASH_SHA256, tls.HashingContext.HASH_SHA512 })
    assert.same({ 0, 1, 2, 3 }, { tls.AESContext.MODE_ECB_ENCRYPT, tls.AESContext.MODE_ECB_DECRYPT,
                                  tls.AESContext.MODE_CBC_ENCRYPT, tls.AESContext.MODE_CBC_DECRYPT })
    assert.equal(2, tls.HMACContext.HASH_SHA256)
  end)

  it("names the mbedtls it runs on", function()
    assert.matches("^%d+%.%d+%.%d+$", tls.mbedtls_version)
  end)

  it("touches no globals and prints nothing when required", function()
    -- The build under test (this process's cpath), in a fresh interpreter.
    local script = ("package.path = %q\npackage.cpath = %q\n"):format(package.path, package.cpath) .. [[
      local before = {}
      for k in pairs(_G) do before[k] = true end
      local tls = require "tlspeer"
      local c = tls.Crypto.new()
      c:generate_random_bytes(16)
      for k in pairs(_G) do
        if not before[k] then error("new global: " .. tostring(k)) end
      end
      for k in pairs(before) do
        if _G[k] == nil then error("lost global: " .. k) end
      end
    ]]
    local path = H.write(os.tmpname(), script)
    local ok, out = H.run(H.LUA .. " " .. H.q(path))
    os.remove(path)
    assert.is_true(ok, out)
    assert.equal("", out)
  end)

  -- (<close> variables: spec/90-lua54_close_spec.lua)
end)
