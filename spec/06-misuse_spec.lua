-- Misuse of Crypto, CryptoKey and X509Certificate: wrong argument types,
-- wrong self, closed objects, absurd sizes, garbage collection order, and
-- the module's manners (no globals, no output).
local H = require "helpers"
local tls = H.tls

-- The sweep runs both here (each case checked by a spec below) and in a
-- fresh `H.LUA` (which must exit normally: a crash anywhere in the sweep
-- shows up as a signal there instead of killing busted).
-- Arguments: the module and a scratch folder (as a script: the folder).
local SWEEP = [==[
local a1, a2 = ...
local tls, dir
if type(a1) == "table" then tls, dir = a1, a2
else tls, dir = require "tlspeer", a1 end

local c = tls.Crypto.new()
local ec = assert(c:generate_ec())
local rsa = assert(c:generate_rsa(1024))
local cert = assert(c:generate_self_signed_certificate(ec))
local ca = assert(c:generate_self_signed_certificate(ec, "CN=sweep ca", nil,
                                                     nil, { ca = true }))
local keyfile, certfile = dir .. "/sweep.key", dir .. "/sweep.crt"
assert(ec:save(keyfile))
assert(cert:save(certfile))
local keypem, certpem = ec:save_to_string(), cert:save_to_string()
local digest = string.rep("\1", 32)
local unpack = table.unpack or unpack            -- (5.1, LuaJIT: unpack)
-- The extreme integers: 64-bit ones on 5.3+, else the largest exact doubles.
local maxint, minint = math.maxinteger or 2^53, math.mininteger or -2^53
local sig = assert(c:sign(2, digest, ec))
local ct = assert(c:encrypt(rsa, "hello"))
local fn = function() end

-- Wrong values for each kind of parameter; {v} so that nil fits.
local NONE = {}
local bad = {
  str     = { {nil}, {true}, {false}, {{}}, {fn}, {ec}, {cert}, {c} },
  optstr  = { {true}, {{}}, {fn}, {ec}, {cert} },
  int     = { {nil}, {true}, {{}}, {fn}, {"abc"}, {1.5}, {ec} },
  hash    = { {nil}, {true}, {{}}, {fn}, {"abc"}, {1.5}, {99}, {-1}, {4} },
  key     = { {nil}, {true}, {{}}, {fn}, {"key"}, {1}, {cert}, {c} },
  cert    = { {nil}, {true}, {{}}, {fn}, {"cert"}, {1}, {ec}, {c} },
  optbool = { {"yes"}, {1}, {{}}, {fn}, {ec} },
  opts    = { {"x"}, {1}, {true}, {fn}, {ec}, {{ san = "x" }},
              {{ san = { 1 } }}, {{ san = { true } }}, {{ ca = 1 }},
              {{ client = "yes" }}, {{ ca = "true" }} },
  curve   = { {"secp999r1"}, {""}, {true}, {{}}, {fn}, {256} },
  fphash  = { {"sha3"}, {"SHA256"}, {true}, {{}}, {fn}, {256} },
}

-- class, self, method, { {kind, good value}, ... }
local K2 = tls.CryptoKey.new()
local X2 = tls.X509Certificate.new()
local methods = {
  { "Crypto", c, "generate_random_bytes", { {"int", 16} } },
  { "Crypto", c, "generate_rsa", { {"int", 1024} } },
  { "Crypto", c, "generate_ec", { {"curve", "secp256r1"} } },
  { "Crypto", c, "generate_self_signed_certificate",
    { {"key", ec}, {"optstr", "CN=x"}, {"optstr", "20200101000000"},
      {"optstr", "20300101000000"}, {"opts", {}} } },
  { "Crypto", c, "issue_certificate",
    { {"key", ec}, {"str", "CN=y"}, {"key", ec}, {"cert", ca},
      {"str", "20200101000000"}, {"str", "20300101000000"},
      {"opts", { san = { "y.test" } }} } },
  { "Crypto", c, "sign", { {"hash", 2}, {"str", digest}, {"key", ec} } },
  { "Crypto", c, "verify",
    { {"hash", 2}, {"str", digest}, {"str", sig}, {"key", ec} } },
  { "Crypto", c, "encrypt", { {"key", rsa}, {"str", "hello"} } },
  { "Crypto", c, "decrypt", { {"key", rsa}, {"str", ct} } },
  { "Crypto", c, "hmac_digest", { {"hash", 2}, {"str", "k"}, {"str", "m"} } },
  { "Crypto", c, "constant_time_compare", { {"str", "a"}, {"str", "b"} } },
  { "CryptoKey", K2, "load",
    { {"str", keyfile}, {"optbool", false}, {"optstr", nil} } },
  { "CryptoKey", K2, "load_from_string",
    { {"str", keypem}, {"optbool", false}, {"optstr", nil} } },
  { "CryptoKey", K2, "save", { {"str", dir .. "/k2.key"}, {"optbool", false} } },
  { "CryptoKey", K2, "save_to_string", { {"optbool", true} } },
  { "CryptoKey", K2, "is_public_only", {} },
  { "CryptoKey", K2, "get_type", {} },
  { "CryptoKey", K2, "get_bits", {} },
  { "X509Certificate", X2, "load", { {"str", certfile} } },
  { "X509Certificate", X2, "load_from_string", { {"str", certpem} } },
  { "X509Certificate", X2, "save", { {"str", dir .. "/x2.crt"} } },
  { "X509Certificate", X2, "save_to_string", {} },
  { "X509Certificate", X2, "get_subject", {} },
  { "X509Certificate", X2, "get_issuer", {} },
  { "X509Certificate", X2, "get_serial", {} },
  { "X509Certificate", X2, "get_not_before", {} },
  { "X509Certificate", X2, "get_not_after", {} },
  { "X509Certificate", X2, "get_san", {} },
  { "X509Certificate", X2, "is_ca", {} },
  { "X509Certificate", X2, "get_fingerprint", { {"fphash", "sha1"} } },
  { "X509Certificate", X2, "get_public_key", {} },
  { "X509Certificate", X2, "get_chain_length", {} },
}

local results = {}
local function record(group, label, ok, err)
  results[#results + 1] = { group = group, label = label, raised = not ok,
                            msg = tostring(err) }
end

local function call(self, name, params, at, value)
  local args, n = {}, #params
  for i, p in ipairs(params) do args[i] = p[2] end
  if at then args[at] = value end
  local f = getmetatable(self).__index[name]
  return pcall(f, self, unpack(args, 1, n))
end

local others = {
  Crypto = { ec, cert }, CryptoKey = { c, cert }, X509Certificate = { c, ec },
}

for _, m in ipairs(methods) do
  local class, self, name, params = m[1], m[2], m[3], m[4]
  local id = class .. ":" .. name
  -- the good call must not raise, or the sweep proves nothing
  local ok, err = call(self, name, params)
  record("baseline", id, ok, err)
  -- each parameter in turn given each wrong value
  for i, p in ipairs(params) do
    for _, v in ipairs(bad[p[1]]) do
      ok, err = call(self, name, params, i, v[1])
      record("args", ("%s arg %d = %s"):format(id, i, tostring(v[1])), ok, err)
    end
  end
  -- a wrong self
  for _, s in ipairs { NONE, true, {}, "s", 1, others[class][1],
                       others[class][2] } do
    local f = getmetatable(self).__index[name]
    local args = {}
    for i, p in ipairs(params) do args[i] = p[2] end
    if s == NONE then
      ok, err = pcall(f)
    else
      ok, err = pcall(f, s, unpack(args, 1, #params))
    end
    record("self", ("%s self = %s"):format(id, s == NONE and "none"
                                                or tostring(s)), ok, err)
  end
end

-- every method on a closed object
local closed = {
  Crypto = tls.Crypto.new(),
  CryptoKey = assert(c:generate_ec()),
  X509Certificate = assert(c:generate_self_signed_certificate(ec)),
}
for _, o in pairs(closed) do getmetatable(o).__close(o) end
for _, m in ipairs(methods) do
  local class, name, params = m[1], m[3], m[4]
  local ok, err = call(closed[class], name, params)
  record("closed", class .. ":" .. name, ok, err)
end
-- closed objects as arguments
local ok, err = pcall(c.generate_self_signed_certificate, c,
                      closed.CryptoKey)
record("closed-arg", "self-signed with a closed key", ok, err)
ok, err = pcall(c.issue_certificate, c, ec, "CN=z", ec,
                closed.X509Certificate, "20200101000000", "20300101000000")
record("closed-arg", "issue under a closed CA", ok, err)
ok, err = pcall(c.sign, c, 2, digest, closed.CryptoKey)
record("closed-arg", "sign with a closed key", ok, err)

-- absurd sizes
for _, v in ipairs { 7, 0, -1, 1023, 1025, 2^62, math.huge, -math.huge,
                     0/0, 1.5, maxint, minint, 1099511627776 --[[ 2^40 ]] } do
  ok, err = pcall(c.generate_rsa, c, v)
  record("sizes", "generate_rsa(" .. tostring(v) .. ")", ok, err)
end
for _, v in ipairs { -1, 2^62, math.huge, -math.huge, 0/0, 1.5,
                     maxint, minint, 2147483648 --[[ 2^31 ]] } do
  ok, err = pcall(c.generate_random_bytes, c, v)
  record("sizes", "generate_random_bytes(" .. tostring(v) .. ")", ok, err)
end

return results
]==]

describe("misuse", function()
  local dir, results

  lazy_setup(function()
    dir = H.tmpdir()
    results = assert(H.load_string(SWEEP, "=sweep"))(tls, dir)
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  -- The cases of one group that did not raise (or, for "baseline", did).
  local function failures(group, check)
    local bad, n = {}, 0
    for _, r in ipairs(results) do
      if r.group == group then
        n = n + 1
        local why = check(r)
        if why then bad[#bad + 1] = r.label .. ": " .. why end
      end
    end
    assert(n > 0, "no cases in group " .. group)
    return bad, n
  end

  local function raises(pattern)
    return function(r)
      if not r.raised then return "did not raise" end
      if pattern and not r.msg:find(pattern) then
        return "raised " .. r.msg
      end
    end
  end

  it("calls every method once the right way without raising", function()
    local bad, n = failures("baseline", function(r)
      if r.raised then return "raised " .. r.msg end
    end)
    assert.are.same({}, bad)
    assert.are.equal(32, n)
  end)

  it("raises on every argument of a wrong type", function()
    local bad, n = failures("args", raises("bad "))
    assert.are.same({}, bad)
    assert.is_true(n > 200)
  end)

  it("raises when a method is called on a wrong self", function()
    -- (save checks its path before its self: with no self at all the
    -- complaint is about argument #2)
    local bad = failures("self", raises("bad argument #[12]"))
    assert.are.same({}, bad)
  end)

  -- Only C writes userdata bytes: a foreign block (a file handle) given a
  -- tlspeer metatable with debug.setmetatable, or one tlspeer object given
  -- another class's, is refused by every method instead of being read as
  -- that class.
  it("refuses a userdata dressed in another class's metatable", function()
    local c = tls.Crypto.new()
    local key = assert(c:generate_ec())
    local srv = tls.TCPServer.new()
    local objects = {
      c, key, assert(c:generate_self_signed_certificate(key)),
      tls.HashingContext.new(), tls.HMACContext.new(), tls.AESContext.new(),
      tls.StreamPeerTCP.new(), srv, tls.TLSOptions.client(),
      tls.StreamPeerTLS.new(),
    }
    local f = assert(io.tmpfile())
    local file_mt = getmetatable(f)
    local other = tls.StreamPeerTCP.new()
    local tcp_mt = getmetatable(other)
    for _, o in ipairs(objects) do
      local mt = getmetatable(o)
      for _, victim in ipairs { f, other } do
        debug.setmetatable(victim, mt)
        local ok, err = pcall(tostring, victim)
        local methods = {}
        for name, fn in pairs(mt.__index) do
          if type(fn) == "function" then methods[#methods + 1] = { name, fn } end
        end
        local calls_ok = {}
        for _, m in ipairs(methods) do
          local ok2, err2 = pcall(m[2], victim)
          if victim ~= other or mt ~= tcp_mt then
            if ok2 or not tostring(err2):find("bad argument", 1, true) then
              calls_ok[#calls_ok + 1] = m[1] .. ": " .. tostring(err2)
            end
          end
        end
        debug.setmetatable(victim, victim == f and file_mt or tcp_mt)
        if victim ~= other or mt ~= tcp_mt then
          assert.is_false(ok, tostring(o))
          assert.matches("bad argument #1", err)
          assert.are.same({}, calls_ok)
        end
      end
    end
    f:close()
    other:disconnect_from_host()
    srv:stop()
  end)

  it("raises 'attempt to use a closed X' from every method", function()
    local bad = failures("closed", function(r)
      local class = r.label:match("^(%w+):")
      if not r.raised then return "did not raise" end
      if not r.msg:find("attempt to use a closed " .. class, 1, true) then
        return "raised " .. r.msg
      end
    end)
    assert.are.same({}, bad)
  end)

  it("raises on closed objects given as arguments", function()
    local bad = failures("closed-arg", raises("attempt to use a closed"))
    assert.are.same({}, bad)
  end)

  it("raises on absurd sizes", function()
    local bad = failures("sizes", raises("bad argument #2"))
    assert.are.same({}, bad)
    local c = tls.Crypto.new()
    assert.are.equal("", c:generate_random_bytes(0))
    assert.are.equal(16, #c:generate_random_bytes("16"))
  end)

  it("runs the whole sweep in a fresh process that exits normally",
     function()
    local script = SWEEP:gsub("return results%s*$",
      "io.write('survived ', #results, ' ', tls.mbedtls_version, '\\n')\n")
    local file = H.write(dir .. "/sweep.lua", script)
    local sub = H.tmpdir()
    local ok, out = H.run(H.LUA .. " -e " .. H.q(("package.path = %q; "
      .. "package.cpath = %q"):format(package.path, package.cpath)) .. " "
      .. H.q(file) .. " " .. H.q(sub))
    assert.is_true(ok, out)
    assert.are.equal(("survived %d %s\n"):format(#results,
                                                 tls.mbedtls_version), out)
  end)

  describe("closing", function()
    local crypto, key, cert

    lazy_setup(function()
      crypto = H.crypto()
      key = assert(crypto:generate_ec())
      cert = assert(crypto:generate_self_signed_certificate(key))
    end)

    it("is harmless twice, and tostring says (closed)", function()
      local objs = {
        Crypto = tls.Crypto.new(),
        CryptoKey = assert(crypto:generate_ec()),
        X509Certificate = assert(crypto:generate_self_signed_certificate(key)),
      }
      for class, o in pairs(objs) do
        local close = getmetatable(o).__close
        close(o)
        close(o)
        getmetatable(o).__gc(o)
        assert.are.equal(class .. " (closed)", tostring(o))
      end
    end)

    -- (<close> variables: spec/90-lua54_close_spec.lua)

    it("gives informative tostrings for live, empty and closed objects",
       function()
      assert.are.equal("Crypto (mbedtls)", tostring(tls.Crypto.new()))
      assert.are.equal("CryptoKey (empty)", tostring(tls.CryptoKey.new()))
      assert.are.equal("X509Certificate (empty)",
                       tostring(tls.X509Certificate.new()))
      assert.are.equal("CryptoKey (EC secp256r1, private)", tostring(key))
      assert.are.equal("CryptoKey (EC secp256r1, public)",
                       tostring(cert:get_public_key()))
      assert.are.equal("X509Certificate (CN=myserver,O=myorganisation,C=IT, "
                       .. "expires 2034-01-01 00:00:00 UTC)", tostring(cert))
      local rsa = assert(crypto:generate_rsa(1024))
      assert.are.equal("CryptoKey (RSA 1024-bit, private)", tostring(rsa))
    end)
  end)

  describe("garbage collection", function()
    local crypto

    lazy_setup(function()
      crypto = H.crypto()
    end)

    it("keeps a public key usable after its certificate is collected",
       function()
      local key = assert(crypto:generate_ec())
      local cert = assert(crypto:generate_self_signed_certificate(key))
      local want = key:save_to_string(true)
      local pub = cert:get_public_key()
      local weak = setmetatable({ cert, key }, { __mode = "v" })
      cert, key = nil, nil
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
      assert.is_nil(weak[2])
      assert.are.equal(want, pub:save_to_string(true))
      assert.are.equal(256, pub:get_bits())
    end)

    it("keeps issued certificates usable after the CA and keys are gone",
       function()
      local leaf, weak
      do
        local c = H.crypto()
        local ca_key = assert(c:generate_ec())
        local ca = assert(c:generate_self_signed_certificate(ca_key,
          "CN=gc ca", nil, nil, { ca = true }))
        local leaf_key = assert(c:generate_ec())
        leaf = assert(c:issue_certificate(leaf_key, "CN=gc.test", ca_key, ca,
          "20240101000000", "20340101000000"))
        weak = setmetatable({ c, ca_key, ca, leaf_key }, { __mode = "v" })
      end
      collectgarbage()
      collectgarbage()
      assert.is_nil(next(weak))
      assert.are.equal("CN=gc ca", leaf:get_issuer())
      assert.are.equal("CN=gc.test", leaf:get_subject())
      assert.is_string(leaf:save_to_string())
      assert.are.equal("ec", leaf:get_public_key():get_type())
    end)

    it("survives finalizers that touch already-collected objects", function()
      local seen = {}
      do
        -- the holder is marked for finalization first, so it is finalized
        -- after the objects it holds
        local function finalize(t)
          for _, o in ipairs(t) do
            local ok, err = pcall(function() return tostring(o), o:get_type() end)
            seen[#seen + 1] = ok and "ok" or tostring(err)
          end
        end
        local holder
        if _VERSION == "Lua 5.1" then
          -- 5.1 and LuaJIT finalize userdata only: a proxy made first (so
          -- finalized last: reverse order of creation) holds the table.
          holder = {}
          local proxy = newproxy(true)
          getmetatable(proxy).__gc = function() finalize(holder) end
          holder.proxy = proxy
        else
          holder = setmetatable({}, { __gc = finalize })
        end
        holder[1] = assert(crypto:generate_ec())
        holder[2] = assert(crypto:generate_self_signed_certificate(holder[1])
                             :get_public_key())
      end
      collectgarbage()
      collectgarbage()
      assert.are.equal(2, #seen)
      for _, s in ipairs(seen) do
        assert.is_true(s == "ok" or s:find("attempt to use a closed "
                                           .. "CryptoKey", 1, true) ~= nil, s)
      end
    end)

    it("collects many objects, loaded and failed, without trouble", function()
      local key = assert(crypto:generate_ec())
      local pem = assert(crypto:generate_self_signed_certificate(key))
                  :save_to_string()
      local keypem = key:save_to_string()
      for i = 1, 300 do
        local x = tls.X509Certificate.new()
        assert.is_true(x:load_from_string(pem))
        assert.is_nil(x:load_from_string(pem:sub(1, 100 + i)))
        local k = tls.CryptoKey.new()
        assert.is_true(k:load_from_string(keypem))
        x:get_public_key()
        if i % 50 == 0 then collectgarbage() end
      end
      collectgarbage()
      assert.are.equal(keypem, key:save_to_string())
    end)
  end)

  describe("the module", function()
    -- Like .busted: only lua/ and the build folder this run uses.
    local function lua(code)
      local cpath = package.cpath:match("^[^;]+")
      local prelude = ("package.path = 'lua/?.lua;lua/?/init.lua'; "
                       .. "package.cpath = %q"):format(cpath)
      return H.run(H.LUA .. " -e " .. H.q(prelude) .. " -e " .. H.q(code))
    end

    local USE = [[
      local c = tls.Crypto.new()
      local k = assert(c:generate_ec())
      local x = assert(c:generate_self_signed_certificate(k))
      x:get_public_key(); x:get_san(); x:save_to_string()
      assert(tls.X509Certificate.new():load_from_string("junk") == nil)
      pcall(c.generate_rsa, c, 7)
      getmetatable(x).__close(x)
      collectgarbage()
    ]]

    it("leaves _G untouched", function()
      local ok, out = lua([[
        local before = {}
        for k, v in pairs(_G) do before[k] = v end
        local tls = require "tlspeer"
      ]] .. USE .. [[
        local changed = {}
        for k, v in pairs(_G) do
          if before[k] ~= v then changed[#changed + 1] = tostring(k) end
        end
        for k in pairs(before) do
          if rawget(_G, k) == nil then changed[#changed + 1] = tostring(k) end
        end
        table.sort(changed)
        io.stdout:write("changed: [", table.concat(changed, ","), "] ",
                        tls.mbedtls_version, "\n")
      ]])
      assert.is_true(ok, out)
      assert.are.equal("changed: [] " .. tls.mbedtls_version .. "\n", out)
    end)

    it("prints nothing", function()
      local ok, out = lua("local tls = require 'tlspeer'\n" .. USE)
      assert.is_true(ok, out)
      assert.are.equal("", out)
    end)
  end)
end)
