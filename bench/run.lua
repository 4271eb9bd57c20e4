-- bench/run.lua: runs the benchmark (started by `make bench`, through
-- bench/run.sh) and writes BENCHMARKS.md and the charts from what it
-- measured.
--
--   lua5.4 bench/run.lua [--quick] SECTION...
--
-- A SECTION is NAME=CPATH=BASELINE=TLS13: a title ("mbedtls 2.28"), the
-- LUA_CPATH entry of a tlspeer build, the C baseline built against the same
-- mbedtls, and "1" when that mbedtls has TLS 1.3.  Each row runs the three
-- implementations side by side, interleaved, several times; the table
-- shows medians and ratios.  Network work runs in two processes: a server
-- (prints "PORT p") and a client on loopback; both print "RESULT key value".
local quick = false
local sections = {}
for _, a in ipairs(arg) do
  if a == "--quick" then
    quick = true
  else
    local name, cpath, baseline, tls13 = a:match("^(.-)=(.-)=(.-)=(.-)$")
    assert(name, "bad section: " .. a)
    sections[#sections + 1] = { name = name, cpath = cpath, baseline = baseline,
                                tls13 = tls13 == "1" }
  end
end
assert(#sections > 0, "usage: run.lua [--quick] NAME=CPATH=BASELINE=TLS13...")

local OUT = "bench/out"
local LUA = os.getenv("LUA") or "lua5.4"
local MiB = 1 << 20

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function clock()
  local f = io.popen("date +%s.%N")
  local t = tonumber(f:read("l"))
  f:close()
  return t
end

local function log(fmt, ...)
  io.stderr:write((fmt):format(...), "\n")
end

-------------------------------------------------------------- the work

local AES12 = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
local CHACHA12 = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
local RSA12 = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
local AES13 = "TLS_AES_128_GCM_SHA256"

local Q = quick
local BULK = Q and 8 * MiB or 64 * MiB

-- key: the RESULT to read; better: "higher" or "lower"; target: what the
-- issue asks of tlspeer, as a ratio to C (and "luasec" when it must also
-- beat LuaSec).  hs counts depend on the engine's speed (2.28 is slow).
local function rows_for(section)
  local v12 = "TLS 1.2"
  local proto, hs_ec, hs_rsa = v12, AES12, RSA12
  if section.tls13 then proto, hs_ec, hs_rsa = "TLS 1.3", AES13, AES13 end
  local rows = {
    { id = "bulk_aes", label = "bulk " .. v12 .. " ECDHE-ECDSA AES-128-GCM", unit = "MB/s",
      test = "bulk", cert = "ec", suite = AES12, n = 1, size = BULK, key = "bulk_mbps",
      better = "higher", target = { c = 0.95 }, reps = Q and 2 or 3 },
    { id = "bulk_chacha", label = "bulk " .. v12 .. " ECDHE-ECDSA ChaCha20-Poly1305", unit = "MB/s",
      test = "bulk", cert = "ec", suite = CHACHA12, n = 1, size = BULK, key = "bulk_mbps",
      better = "higher", target = { c = 0.95 }, reps = Q and 2 or 3 },
  }
  if section.tls13 then
    rows[#rows + 1] = { id = "bulk_aes13", label = "bulk TLS 1.3 AES-128-GCM", unit = "MB/s",
      test = "bulk", cert = "ec", suite = AES13, n = 1, size = BULK, key = "bulk_mbps",
      better = "higher", target = { c = 0.95 }, reps = Q and 2 or 3 }
  end
  local more = {
    { id = "hs_ec", label = "full handshakes, " .. proto .. ", ECDSA P-256 cert", unit = "hs/s",
      test = "hs", cert = "ec", suite = hs_ec, n = Q and 12 or 60, size = 0, key = "hs_per_s",
      better = "higher", target = { c = 0.95 }, reps = Q and 2 or 3 },
    { id = "hs_rsa", label = "full handshakes, " .. proto .. ", RSA-2048 cert", unit = "hs/s",
      test = "hs", cert = "rsa", suite = hs_rsa, n = Q and 12 or 60, size = 0, key = "hs_per_s",
      better = "higher", target = { c = 0.95 }, reps = Q and 2 or 3 },
    { id = "resume", label = "resumed handshakes (session ticket), " .. proto, unit = "hs/s",
      test = "resume", cert = "ec", suite = hs_ec, n = Q and 100 or 400, size = 0, key = "hs_per_s",
      better = "higher", target = { c = 0.95 }, reps = Q and 3 or 5, check_reuse = true },
    { id = "mem_server", label = "memory per idle connection, server process, " .. proto,
      unit = "KiB", test = "mem", cert = "ec", suite = hs_ec, n = Q and 200 or 1000, size = 0,
      key = "server_mem_per_conn", scale = 1 / 1024, better = "lower",
      target = { c = 1.1, luasec = 1.0 }, reps = 1, group = "mem" },
    { id = "mem_client", label = "memory per idle connection, client process, " .. proto,
      unit = "KiB", key = "client_mem_per_conn", scale = 1 / 1024, better = "lower",
      target = { c = 1.1, luasec = 1.0 }, same_as = "mem_server" },
    { id = "poll", label = "poll() on an idle connection", unit = "ns",
      test = "poll", cert = "ec", suite = hs_ec, n = Q and 100000 or 500000, size = 0,
      key = "poll_ns", better = "lower", target = { abs = 1000 }, reps = Q and 3 or 5 },
    { id = "echo", label = "1-byte echo round trip", unit = "µs",
      test = "echo", cert = "ec", suite = hs_ec, n = Q and 2000 or 10000, size = 0,
      key = "echo_us", better = "lower", target = { c = 1.1 }, reps = Q and 3 or 5 },
    { id = "rsa", label = "generate_rsa(2048)", unit = "ms", crypto = "rsa",
      n = Q and 2 or 4, size = 0, key = "keygen_ms", better = "lower", reps = Q and 3 or 5 },
    { id = "ec", label = "generate_ec(P-256)", unit = "ms", crypto = "ec",
      n = Q and 50 or 200, size = 0, key = "keygen_ms", better = "lower", reps = Q and 3 or 5 },
    { id = "sha256", label = "SHA-256 (HashingContext, 16 MiB updates)", unit = "MB/s",
      crypto = "sha256", n = Q and 2 or 4, size = 16 * MiB, key = "sha256_mbps",
      better = "higher", target = { c = 0.95 }, reps = Q and 3 or 5 },
  }
  for _, r in ipairs(more) do rows[#rows + 1] = r end
  return rows
end

--------------------------------------------------------- running things

local function impls(section)
  local env = ("env BENCH_CERTS=%s LUA_PATH=%s LUA_CPATH=%s "):format(
    sh_quote(OUT .. "/certs"), sh_quote("lua/?.lua;lua/?/init.lua;;"),
    sh_quote(section.cpath .. ";;"))
  local lenv = ("env BENCH_CERTS=%s "):format(sh_quote(OUT .. "/certs"))
  return {
    { id = "c", name = "C (mbedtls)", cmd = lenv .. sh_quote(section.baseline) },
    { id = "tlspeer", name = "tlspeer", cmd = env .. LUA .. " bench/tlspeer_bench.lua" },
    { id = "luasec", name = "LuaSec (OpenSSL)", cmd = lenv .. LUA .. " bench/luasec_bench.lua" },
  }
end

local function parse(text, into)
  for k, v in text:gmatch("RESULT (%S+) (%S+)") do into[k] = tonumber(v) end
  return into
end

local ERRLOG = OUT .. "/errors.log"

-- One network run: server, then client; returns the RESULTs of both.
local function run_net(impl, row)
  local args = ("%s %s %s %d %d"):format(row.test, row.cert, row.suite, row.n, row.size)
  local srv = io.popen(("timeout 300 %s server %s 2>>%s"):format(impl.cmd, args, ERRLOG), "r")
  local first = srv:read("l") or ""
  local port = first:match("^PORT (%d+)")
  if not port then
    srv:close()
    log("  %s: the server did not start (see %s)", impl.id, ERRLOG)
    return {}
  end
  local cli = io.popen(("timeout 300 %s client %s %s 2>>%s"):format(impl.cmd, port, args,
                                                                  ERRLOG), "r")
  local out = cli:read("a")
  cli:close()
  out = out .. (srv:read("a") or "")
  srv:close()
  return parse(out, {})
end

local function run_crypto(impl, row)
  if impl.id == "luasec" then
    if row.crypto ~= "sha256" then return {} end
    -- LuaSec has no hashing: OpenSSL's own number, from the openssl command.
    local f = io.popen("openssl speed -seconds 1 -bytes 16384 sha256 2>/dev/null")
    local text = f:read("a")
    f:close()
    local v = text:match("\nsha256%s+([%d.]+)k")
    return v and { sha256_mbps = tonumber(v) * 1000 / 1e6 } or {}
  end
  local f = io.popen(("%s crypto %s %d %d 2>>%s"):format(impl.cmd, row.crypto, row.n,
                                                         row.size, ERRLOG))
  local out = f:read("a")
  f:close()
  return parse(out, {})
end

local function median(t)
  if #t == 0 then return nil end
  table.sort(t)
  local m = #t // 2
  if #t % 2 == 1 then return t[m + 1] end
  return (t[m] + t[m + 1]) / 2
end

local function measure(section)
  local rows, list = rows_for(section), impls(section)
  local by_id = {}
  for _, row in ipairs(rows) do by_id[row.id] = row end
  for _, row in ipairs(rows) do
    if not row.same_as then
      local samples = {}     -- samples[impl][key] = { values }
      for _, impl in ipairs(list) do samples[impl.id] = {} end
      for rep = 1, row.reps do
        -- Interleaved, and the order rotates: the machine's noise falls on
        -- all three alike.
        for k = 0, #list - 1 do
          local impl = list[(rep + k - 1) % #list + 1]
          local res = row.crypto and run_crypto(impl, row) or run_net(impl, row)
          for key, v in pairs(res) do
            local s = samples[impl.id]
            s[key] = s[key] or {}
            table.insert(s[key], v)
          end
        end
      end
      row.samples = samples
      log("%-62s %s", section.name .. ": " .. row.label, (function()
        local parts = {}
        for _, impl in ipairs(list) do
          local v = samples[impl.id][row.key] and median(samples[impl.id][row.key])
          parts[#parts + 1] = ("%s=%s"):format(impl.id, v and ("%.4g"):format(v) or "n/a")
        end
        return table.concat(parts, " ")
      end)())
    end
  end
  for _, row in ipairs(rows) do
    local src = row.same_as and by_id[row.same_as] or row
    row.values, row.extra = {}, {}
    for _, impl in ipairs(list) do
      local s = src.samples[impl.id][row.key]
      local v = s and median(s)
      if v and row.scale then v = v * row.scale end
      row.values[impl.id] = v
      if row.check_reuse then
        local r = src.samples[impl.id].reused
        row.extra[impl.id] = r and median(r)
      end
    end
    if row.check_reuse then
      -- A "resumed" number only counts when the handshakes were resumed.
      for id, reused in pairs(row.extra) do
        if reused == nil or reused < (row.n - 1) then row.values[id] = nil end
      end
    end
  end
  return rows, list
end

---------------------------------------------------------------- report

local function fmt(v)
  if v == nil then return "N/A" end
  if v >= 1000 then return ("%.0f"):format(v) end
  if v >= 100 then return ("%.1f"):format(v) end
  if v >= 10 then return ("%.2f"):format(v) end
  return ("%.3f"):format(v)
end

local function ratio(a, b)
  if a == nil or b == nil or b == 0 then return nil end
  return a / b
end

local function verdict(row)
  local t, v = row.target, row.values
  if not t then return "" end
  local parts, ok = {}, true
  if t.abs then
    parts[#parts + 1] = ("< %g %s"):format(t.abs, row.unit)
    if not v.tlspeer or v.tlspeer >= t.abs then ok = false end
  end
  if t.c then
    local r = ratio(v.tlspeer, v.c)
    if row.better == "higher" then
      parts[#parts + 1] = ("≥ %.2f× C"):format(t.c)
      if not r or r < t.c then ok = false end
    else
      parts[#parts + 1] = ("≤ %.2f× C"):format(t.c)
      if not r or r > t.c then ok = false end
    end
  end
  if t.luasec then
    parts[#parts + 1] = "< LuaSec"
    if not v.tlspeer or not v.luasec or v.tlspeer >= v.luasec then ok = false end
  end
  return ("%s %s"):format(ok and "**met**" or "**not met**", table.concat(parts, ", "))
end

local function sh(cmd)
  local f = io.popen(cmd .. " 2>/dev/null")
  local s = f:read("a") or ""
  f:close()
  return (s:gsub("%s+$", ""))
end

local function machine()
  local cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-"):gsub("^%s+", "")
  local flags = sh("grep -m1 '^flags' /proc/cpuinfo")
  local has = {}
  for _, f in ipairs { "aes", "pclmulqdq", "avx2", "sha_ni" } do
    if flags:find("%f[%w_]" .. f .. "%f[^%w_]") then has[#has + 1] = f end
  end
  return {
    cpu = cpu, flags = table.concat(has, " "), cores = sh("nproc"),
    kernel = sh("uname -srm"), os = sh(". /etc/os-release && echo $PRETTY_NAME"),
    load = sh("cut -d' ' -f1-3 /proc/loadavg"),
    lua = sh(LUA .. " -v"), openssl = sh("openssl version"),
    luasec = sh(LUA .. " bench/luasec_bench.lua version"),
    luasec_pkg = sh("dpkg-query -W -f='${Version}' lua-sec"),
    luasocket_pkg = sh("dpkg-query -W -f='${Version}' lua-socket"),
    gnuplot = sh("gnuplot --version"),
  }
end

-- The chart: each implementation's speed relative to the C baseline
-- (higher is better: for "lower is better" rows, C's value / theirs).
local function chart(section, rows, list, tag)
  local dat = ("%s/chart-%s.dat"):format(OUT, tag)
  local png = ("bench/chart-%s.png"):format(tag)
  local f = assert(io.open(dat, "w"))
  f:write("# row tlspeer luasec (speed relative to C = 1)\n")
  local n = 0
  for _, row in ipairs(rows) do
    local v = row.values
    if v.c and (v.tlspeer or v.luasec) then
      local function rel(x)
        if not x or x == 0 then return "NaN" end
        return ("%.4f"):format(row.better == "higher" and x / v.c or v.c / x)
      end
      local label = row.id:gsub("_", "-")
      f:write(('"%s" %s %s\n'):format(label, rel(v.tlspeer), rel(v.luasec)))
      n = n + 1
    end
  end
  f:close()
  local gp = ("%s/chart-%s.gp"):format(OUT, tag)
  f = assert(io.open(gp, "w"))
  f:write(([[
set terminal pngcairo size 1100,520 font "DejaVu Sans,11"
set output "%s"
set title "%s: speed relative to the C baseline on mbedtls (1 = C; higher is better; log scale)"
set style data histograms
set style histogram clustered gap 1.5
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y 2
set yrange [0.0625:64]
set ytics ("1/16" 0.0625, "1/8" 0.125, "1/4" 0.25, "1/2" 0.5, "1" 1, "2" 2, "4" 4, "8" 8, "16" 16, "32" 32, "64" 64)
set grid ytics
set xtics rotate by -30 left
set key top left
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb "#222222"
set arrow from graph 0, first 0.95 to graph 1, first 0.95 nohead dt 2 lc rgb "#aa0000"
set bmargin 6
plot "%s" using 2:xtic(1) title "tlspeer (Lua)" lc rgb "#1f77b4", \
     "" using 3 title "LuaSec (OpenSSL)" lc rgb "#ff7f0e"
]]):format(png, section.name, dat))
  f:close()
  local ok = os.execute("gnuplot " .. sh_quote(gp) .. " 2>>" .. ERRLOG)
  return ok and png or nil, n
end

local function write_report(m, results, elapsed)
  local f = assert(io.open("BENCHMARKS.md", "w"))
  local w = function(...) f:write(...) end
  w("# tlspeer benchmarks\n\n")
  w("Written by `make bench", quick and " QUICK=1" or "", "` (bench/run.lua) from the numbers it measured",
    " on ", os.date("!%Y-%m-%d %H:%M UTC"), ", in ", ("%.0f"):format(elapsed), " s",
    quick and " — **quick mode**: small sizes and counts, fewer repeats; run `make bench` for the full numbers" or "",
    ". Do not edit the numbers by hand: run it again.\n\n")
  w("Three implementations of the same work, run side by side in one run over loopback ",
    "(server and client in two processes, nothing pinned), interleaved, the order rotating ",
    "each repeat, so that the ratios hold on a noisy machine:\n\n",
    "- **tlspeer** — `bench/tlspeer_bench.lua`, the public API from Lua 5.4 ",
    "(TCPServer, StreamPeerTCP, StreamPeerTLS with blocking `get_data`/`put_data`, ",
    "TLSOptions with `ciphersuites`, Crypto, HashingContext);\n",
    "- **C** — `bench/baseline.c`, mbedtls called directly, built against the same mbedtls ",
    "as that tlspeer build and configured alike (client verifies the server, AES-256-GCM ",
    "session tickets, TCP_NODELAY, the same cipher suite): the limit for this engine;\n",
    "- **LuaSec** — `bench/luasec_bench.lua`, LuaSec on LuaSocket (OpenSSL), ",
    "the same suite and key exchange group (X25519).\n\n")
  w("## Machine\n\n")
  w("| | |\n|---|---|\n")
  w("| CPU | ", m.cpu, " (flags: ", m.flags, ") |\n")
  w("| cores | ", m.cores, " |\n")
  w("| kernel | ", m.kernel, " |\n")
  w("| OS | ", m.os, " |\n")
  w("| load average at the end | ", m.load, " (other work was running: compare ratios, not absolute numbers) |\n")
  w("| Lua | ", m.lua, " |\n")
  w("| LuaSec | ", m.luasec, " (Debian lua-sec ", m.luasec_pkg, "), LuaSocket (Debian lua-socket ",
    m.luasocket_pkg, ") |\n")
  w("| OpenSSL | ", m.openssl, " |\n")
  for _, r in ipairs(results) do
    w("| ", r.section.name, " | ", r.version, " (tlspeer: `", r.section.cpath, "`, C: `",
      r.section.baseline, "`) |\n")
  end
  w("\n")
  for _, r in ipairs(results) do
    w("## ", r.section.name, "\n\n")
    w("Median of the repeats (shown as ×N). Ratios are of the values as shown: for MB/s and ",
      "hs/s higher is better; for KiB, ns, µs and ms lower is better.\n\n")
    w("| work | unit | tlspeer | C (mbedtls) | LuaSec (OpenSSL) | tlspeer/C | tlspeer/LuaSec | target |\n")
    w("|---|---|--:|--:|--:|--:|--:|---|\n")
    for _, row in ipairs(r.rows) do
      local v = row.values
      local src_reps = row.reps or 3
      if row.same_as then
        for _, o in ipairs(r.rows) do if o.id == row.same_as then src_reps = o.reps end end
      end
      local label = row.label
      if row.test == "bulk" then
        label = label .. (" (%d MiB each way)"):format(row.size // MiB)
      elseif row.test == "hs" or row.test == "resume" then
        label = label .. (" (%d connections)"):format(row.n)
      elseif row.test == "mem" or row.same_as then
        label = label .. (" (%d connections)"):format(quick and 200 or 1000)
      end
      if row.check_reuse then
        local parts = {}
        for _, impl in ipairs(r.list) do
          local x = row.extra[impl.id]
          parts[#parts + 1] = ("%s %s"):format(impl.id, x and ("%d/%d"):format(x, row.n - 1) or "?")
        end
        label = label .. "; resumed: " .. table.concat(parts, ", ")
      end
      w("| ", label, " ×", src_reps, " | ", row.unit, " | ", fmt(v.tlspeer), " | ", fmt(v.c), " | ",
        row.id == "sha256" and (v.luasec and fmt(v.luasec) .. " (openssl speed)" or "N/A") or fmt(v.luasec),
        " | ", fmt(ratio(v.tlspeer, v.c)), " | ", fmt(ratio(v.tlspeer, v.luasec)), " | ",
        verdict(row), " |\n")
    end
    w("\n")
    if r.png then
      w("![", r.section.name, ": speed relative to the C baseline](", r.png, ")\n\n")
    end
  end
  if results.notes then w(results.notes) end
  f:close()
end

------------------------------------------------------------------ main

local t0 = clock()
local m = machine()
local results = {}
for i, section in ipairs(sections) do
  local rows, list = measure(section)
  local tag = section.name:gsub("[^%w.]+", "-"):gsub("^%-", ""):gsub("%-$", "")
  local png = chart(section, rows, list, tag)
  results[i] = { section = section, rows = rows, list = list, png = png,
                 version = sh(impls(section)[1].cmd .. " version") }
end
local notes = io.open("bench/NOTES.md")
if notes then results.notes = notes:read("a"); notes:close() end
write_report(m, results, clock() - t0)
log("wrote BENCHMARKS.md (%.0f s)", clock() - t0)
