-- The zlib binding (core._zstream): what HTTPRequest's gzip and deflate
-- bodies and WebSocket's permessage-deflate stand on.  Round trips in
-- every format, fed whole and byte by byte; streams made by Python's zlib
-- and gzip (another implementation) read back, and ours read by Python;
-- corrupt and truncated streams; a decompression bomb held to max_out per
-- call; trailing data; sync flushes as RFC 7692 uses them.
local H = require "helpers"
local core = require "tlspeer.core"

local function z(...) return core._zstream(...) end

-- Inflates `data` fed in pieces of `step` bytes; returns the output and
-- the last state.
local function inflate_all(format, data, step, window_bits)
  local s = z("inflate", format, window_bits)
  local parts, state = {}, nil
  for i = 1, #data, step do
    local out, st = assert(s:update(data:sub(i, i + step - 1)))
    parts[#parts + 1] = out
    state = st
  end
  return table.concat(parts), state
end

local function python(code, input)
  local dir = H.tmpdir()
  H.write(dir .. "/in", input or "")
  H.write(dir .. "/p.py", "import sys, zlib, gzip\n" ..
    "data = open(sys.argv[1], 'rb').read()\n" .. code ..
    "\nopen(sys.argv[2], 'wb').write(out)\n")
  assert(H.execute(("python3 %s %s %s"):format(H.q(dir .. "/p.py"), H.q(dir .. "/in"), H.q(dir .. "/out"))))
  return H.read(dir .. "/out")
end

describe("core._zstream", function()
  local text = ("tlspeer compresses the bodies games download. "):rep(3000) .. H.bytes(5000, 1)

  it("round trips in gzip, zlib and raw deflate, fed whole and in small pieces", function()
    for _, format in ipairs { "gzip", "zlib", "raw" } do
      for _, level in ipairs { 1, 6, 9 } do
        local packed, st = assert(z("deflate", format, level):update(text, "finish"))
        assert.equal("end", st)
        assert.is_true(#packed < #text)
        for _, step in ipairs { #packed, 7, 1 } do
          local back, state = inflate_all(format, packed, step)
          assert.equal(#text, #back)
          assert.equal(text, back)
          assert.equal("end", state)
        end
      end
    end
  end)

  it("\"auto\" reads gzip and zlib alike", function()
    for _, format in ipairs { "gzip", "zlib" } do
      local packed = z("deflate", format):update(text, "finish")
      assert.equal(text, (inflate_all("auto", packed, 1000)))
    end
  end)

  it("reads what Python's zlib and gzip make, and Python reads ours", function()
    assert.equal(text, (inflate_all("gzip", python("out = gzip.compress(data)", text), 333)))
    assert.equal(text, (inflate_all("zlib", python("out = zlib.compress(data, 9)", text), 333)))
    assert.equal(text, (inflate_all("raw", python(
      "c = zlib.compressobj(6, zlib.DEFLATED, -15); out = c.compress(data) + c.flush()", text), 333)))
    local ours = z("deflate", "gzip"):update(text, "finish")
    assert.equal(text, python("out = gzip.decompress(data)", ours))
    ours = z("deflate", "raw", 6, 10):update(text, "finish")
    assert.equal(text, python("out = zlib.decompress(data, -10)", ours))
  end)

  it("sync flushes end each message on a byte boundary (RFC 7692), with context kept", function()
    local d, i = z("deflate", "raw", 6, 15), z("inflate", "raw", 15)
    for n = 1, 5 do
      local msg = ("message %d: "):format(n) .. ("hello "):rep(n * 50)
      local out = assert(d:update(msg, "sync"))
      assert.equal("\0\0\255\255", out:sub(-4))          -- the tail RFC 7692 strips
      local back = assert(i:update(out:sub(1, -5) .. "\0\0\255\255", "sync"))
      assert.equal(msg, back)
    end
    -- Python, with the same framing, reads the same stream.
    local stream = {}
    local d2 = z("deflate", "raw")
    for n = 1, 3 do stream[n] = d2:update(("part %d "):format(n):rep(20), "sync") end
    assert.equal(("part 1 "):rep(20) .. ("part 2 "):rep(20) .. ("part 3 "):rep(20),
      python("out = zlib.decompressobj(-15).decompress(data)", table.concat(stream)))
  end)

  it("a window of 8 bits (RFC 7692's smallest) works both ways", function()
    local packed = assert(z("deflate", "raw", 6, 8):update(text, "finish"))
    assert.equal(text, (inflate_all("raw", packed, 100, 9)))
    assert.equal(text, (inflate_all("raw", packed, 100, 8)))
  end)

  it("corrupt and truncated streams: nil, a message, ERR_INVALID_DATA, never a crash", function()
    local packed = z("deflate", "gzip"):update(text, "finish")
    local r = { z("inflate", "gzip"):update("not compressed at all") }
    assert.is_nil(r[1])
    assert.matches("corrupt", r[2])
    assert.equal("ERR_INVALID_DATA", r[3])
    -- A flipped byte in the middle (a bad block, or the CRC at the end).
    local bad = packed:sub(1, 200) .. string.char((packed:byte(201) + 1) % 256) .. packed:sub(202)
    r = { z("inflate", "gzip"):update(bad) }
    assert.is_nil(r[1])
    assert.equal("ERR_INVALID_DATA", r[3])
    local crc = packed:sub(1, -9) .. string.char((packed:byte(-8) + 1) % 256) .. packed:sub(-7)
    r = { z("inflate", "gzip"):update(crc) }
    assert.is_nil(r[1])
    assert.matches("check", r[2])
    -- Truncated: no error, but never "end" (the caller says the body was cut).
    local out, st = assert(z("inflate", "gzip"):update(packed:sub(1, math.floor(#packed / 2))))
    assert.is_true(#out < #text)
    assert.equal("ok", st)
    for i = 1, 300 do                 -- random garbage after a gzip header
      local junk = "\31\139\8\0\0\0\0\0\0\3" .. H.bytes(64, i)
      local ok = pcall(function() return z("inflate", "gzip"):update(junk) end)
      assert.is_true(ok)
    end
  end)

  it("holds a decompression bomb to max_out per call; the rest comes call by call", function()
    local bomb = z("deflate", "gzip", 9):update(("\0"):rep(8 * 1024 * 1024), "finish")
    assert.is_true(#bomb < 10000)
    local s = z("inflate", "gzip")
    local out, st = s:update(bomb, "none", 65536)
    assert.equal(65536, #out)
    assert.equal("more", st)
    local total, calls = #out, 1
    while st == "more" do
      out, st = s:update("", "none", 1024 * 1024)
      assert.is_true(#out <= 1024 * 1024)
      total, calls = total + #out, calls + 1
    end
    assert.equal("end", st)
    assert.equal(8 * 1024 * 1024, total)
    assert.is_true(calls >= 8)
    local tin, tout = s:get_totals()
    assert.equal(#bomb, tin)
    assert.equal(total, tout)
  end)

  it("input after the end of the stream is counted and ignored", function()
    local packed = z("deflate", "gzip"):update("abc", "finish")
    local s = z("inflate", "gzip")
    local out, st, extra = s:update(packed .. "trailing junk")
    assert.equal("abc", out)
    assert.equal("end", st)
    assert.equal(13, extra)
    assert.same({ "", "end", 4 }, { s:update("more") })
    s:reset()
    assert.equal("abc", (s:update(packed)))
  end)

  it("checks its arguments; a closed stream raises; tostring says what it is", function()
    assert.has_error(function() z("squash", "gzip") end)
    assert.has_error(function() z("inflate", "lzma") end)
    assert.has_error(function() z("deflate", "auto") end)
    assert.has_error(function() z("deflate", "gzip", 10) end)
    assert.has_error(function() z("inflate", "raw", 16) end)
    local s = z("inflate", "zlib")
    assert.has_error(function() s:update({}) end)
    assert.has_error(function() s:update("", "later") end)
    assert.matches("^zstream %(inflate", tostring(s))
    s:close()
    s:close()
    assert.equal("zstream (closed)", tostring(s))
    assert.has_error(function() s:update("") end, "attempt to use a closed zstream")
  end)
end)
