-- bench/run.lua: runs the benchmark (started by `make bench`, through
-- bench/run.sh) and writes BENCHMARKS.md and the charts from what it
-- measured.
--
--   lua5.4 bench/run.lua [--quick] [--no-callgrind] SECTION...
--
-- A SECTION is TITLE=CPATH=BASELINE=ENGINE=TLS13=TAG: a title ("mbedtls
-- 3.6.6, tlspeer's build"), the LUA_CPATH entry of a tlspeer build, the C
-- baseline and bench/engine.c built against the same mbedtls, "1" when that
-- mbedtls has TLS 1.3, and a short tag (tlspeer, debian, system).
-- bench/run.sh has checked that each is the build it claims.
--
-- Wall-clock: each row runs the three implementations (tlspeer, the C
-- baseline, LuaSec) of every section, interleaved, the order of sections and
-- of implementations rotating each repeat, so that the machine's noise falls
-- on all alike; the tables show medians and ratios.  Network work runs in two
-- processes: a server (prints "PORT p") and a client on loopback; both print
-- "RESULT key value".
--
-- Instructions (valgrind --tool=callgrind: the same count for every run of
-- the same work, whatever else the machine does): for the key rows (bulk,
-- full handshakes) each implementation's server and client run under
-- callgrind twice, with two sizes or two handshake counts; the difference,
-- divided by the difference of work, is instructions per byte or per
-- handshake, start-up and certificate loading cancelled out.  bench/engine.c
-- (mbedtls alone, client and server in one process over memory) gives the
-- engine's own counts per phase for the table of the three builds side by
-- side, with its wall-clock beside them.
local quick, use_callgrind = false, true
local sections = {}
for _, a in ipairs(arg) do
  if a == "--quick" then
    quick = true
  elseif a == "--no-callgrind" then
    use_callgrind = false
  else
    local title, cpath, baseline, engine, tls13, tag =
      a:match("^(.-)=(.-)=(.-)=(.-)=(.-)=(.-)$")
    assert(title, "bad section: " .. a)
    sections[#sections + 1] = { name = title, cpath = cpath, baseline = baseline,
                                engine = engine, tls13 = tls13 == "1", tag = tag }
  end
end
assert(#sections > 0,
  "usage: run.lua [--quick] [--no-callgrind] TITLE=CPATH=BASELINE=ENGINE=TLS13=TAG...")

local OUT = "bench/out"
local LUA = os.getenv("LUA") or "lua5.4"
local MiB = 1 << 20
local ERRLOG = OUT .. "/errors.log"

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

local function sh(cmd)
  local f = io.popen(cmd .. " 2>/dev/null")
  local s = f:read("a") or ""
  f:close()
  return (s:gsub("%s+$", ""))
end

local function median(t)
  if t == nil or #t == 0 then return nil end
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  table.sort(c)
  local m = #c // 2
  if #c % 2 == 1 then return c[m + 1] end
  return (c[m] + c[m + 1]) / 2
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
-- beat LuaSec).  cg: the two amounts of work run under callgrind (bulk
-- sizes, handshake counts) for the instruction columns.  Quick mode keeps
-- the rows marked quick.
local function rows_for(section)
  local v12 = "TLS 1.2"
  local proto, hs_ec, hs_rsa = v12, AES12, RSA12
  if section.tls13 then proto, hs_ec, hs_rsa = "TLS 1.3", AES13, AES13 end
  local bulk_cg = Q and { MiB // 4, 3 * MiB // 4 } or { MiB // 2, 3 * MiB // 2 }
  local hs_cg = Q and { 1, 2 } or { 1, 3 }
  local rows = {
    { id = "bulk_aes", label = "bulk " .. v12 .. " ECDHE-ECDSA AES-128-GCM", unit = "MB/s",
      test = "bulk", cert = "ec", suite = AES12, n = 1, size = BULK, key = "bulk_mbps",
      better = "higher", target = { c = 0.95 }, reps = Q and 2 or 3, quick = true, cg = bulk_cg },
    { id = "bulk_chacha", label = "bulk " .. v12 .. " ECDHE-ECDSA ChaCha20-Poly1305", unit = "MB/s",
      test = "bulk", cert = "ec", suite = CHACHA12, n = 1, size = BULK, key = "bulk_mbps",
      better = "higher", target = { c = 0.95 }, reps = Q and 2 or 3, quick = true, cg = bulk_cg },
  }
  if section.tls13 then
    rows[#rows + 1] = { id = "bulk_aes13", label = "bulk TLS 1.3 AES-128-GCM", unit = "MB/s",
      test = "bulk", cert = "ec", suite = AES13, n = 1, size = BULK, key = "bulk_mbps",
      better = "higher", target = { c = 0.95 }, reps = Q and 2 or 3, quick = true, cg = bulk_cg }
  end
  local more = {
    { id = "hs_ec", label = "full handshakes, " .. proto .. ", ECDSA P-256 cert", unit = "hs/s",
      test = "hs", cert = "ec", suite = hs_ec, n = Q and 12 or 60, size = 0, key = "hs_per_s",
      better = "higher", target = { c = 0.95 }, reps = Q and 2 or 3, quick = true, cg = hs_cg },
    { id = "hs_rsa", label = "full handshakes, " .. proto .. ", RSA-2048 cert", unit = "hs/s",
      test = "hs", cert = "rsa", suite = hs_rsa, n = Q and 12 or 60, size = 0, key = "hs_per_s",
      better = "higher", target = { c = 0.95 }, reps = Q and 2 or 3, quick = true, cg = hs_cg },
    { id = "resume", label = "resumed handshakes (session ticket), " .. proto, unit = "hs/s",
      test = "resume", cert = "ec", suite = hs_ec, n = Q and 100 or 400, size = 0, key = "hs_per_s",
      better = "higher", target = { c = 0.95 }, reps = Q and 3 or 11, check_reuse = true },
    { id = "mem_server", label = "memory per idle connection, server process, " .. proto,
      unit = "KiB", test = "mem", cert = "ec", suite = hs_ec, n = Q and 100 or 1000, size = 0,
      key = "server_mem_per_conn", scale = 1 / 1024, better = "lower",
      target = { c = 1.1, luasec = 1.0 }, reps = 1, quick = true },
    { id = "mem_client", label = "memory per idle connection, client process, " .. proto,
      unit = "KiB", key = "client_mem_per_conn", scale = 1 / 1024, better = "lower",
      target = { c = 1.1, luasec = 1.0 }, same_as = "mem_server", quick = true },
    { id = "poll", label = "poll() on an idle connection", unit = "ns",
      test = "poll", cert = "ec", suite = hs_ec, n = Q and 100000 or 500000, size = 0,
      key = "poll_ns", better = "lower", target = { abs = 1000 }, reps = Q and 3 or 5 },
    { id = "echo", label = "1-byte echo round trip", unit = "µs",
      test = "echo", cert = "ec", suite = hs_ec, n = Q and 2000 or 10000, size = 0,
      key = "echo_us", better = "lower", target = { c = 1.05 }, reps = Q and 3 or 11,
      pin = true },
    { id = "rsa", label = "generate_rsa(2048)", unit = "ms", crypto = "rsa",
      n = Q and 2 or 4, size = 0, key = "keygen_ms", better = "lower", reps = Q and 3 or 5 },
    { id = "ec", label = "generate_ec(P-256)", unit = "ms", crypto = "ec",
      n = Q and 50 or 200, size = 0, key = "keygen_ms", better = "lower", reps = Q and 3 or 5 },
    { id = "sha256", label = "SHA-256 (HashingContext, 16 MiB updates)", unit = "MB/s",
      crypto = "sha256", n = Q and 2 or 4, size = 16 * MiB, key = "sha256_mbps",
      better = "higher", target = { c = 0.95 }, reps = Q and 3 or 5 },
  }
  for _, r in ipairs(more) do rows[#rows + 1] = r end
  if Q then
    local keep = {}
    for _, r in ipairs(rows) do
      if r.quick then
        -- instructions of one bulk row and the handshakes only
        if r.id == "bulk_chacha" or r.id == "bulk_aes13" then r.cg = nil end
        keep[#keep + 1] = r
      end
    end
    rows = keep
  end
  return rows
end

-- bench/engine.c's work, for the table of the builds side by side: each
-- under callgrind (instructions of each phase) and natively (wall-clock of
-- the same phases, median of three runs interleaved across the builds).
local function engine_rows(section)
  local g = section.groups
  local rows = {
    { id = "bulk_aes12", label = "bulk TLS 1.2 AES-128-GCM", args = { "bulk", AES12 },
      size = MiB, wall_size = 16 * MiB },
    { id = "bulk_chacha12", label = "bulk TLS 1.2 ChaCha20-Poly1305", args = { "bulk", CHACHA12 },
      size = MiB, wall_size = 16 * MiB },
    { id = "bulk_aes13", label = "bulk TLS 1.3 AES-128-GCM", args = { "bulk", AES13 },
      size = MiB, wall_size = 16 * MiB, tls13 = true },
    { id = "hs_ec12", label = "full handshake TLS 1.2, ECDSA P-256", args = { "hs", "ec", "1.2", g },
      n = 3, wall_n = Q and 10 or 30 },
    { id = "hs_rsa12", label = "full handshake TLS 1.2, RSA-2048", args = { "hs", "rsa", "1.2", g },
      n = 3, wall_n = Q and 10 or 30 },
    { id = "hs_ec13", label = "full handshake TLS 1.3, ECDSA P-256", args = { "hs", "ec", "1.3", g },
      n = 3, wall_n = Q and 10 or 30, tls13 = true },
    { id = "hs_rsa13", label = "full handshake TLS 1.3, RSA-2048", args = { "hs", "rsa", "1.3", g },
      n = 3, wall_n = Q and 10 or 30, tls13 = true },
    { id = "mem", label = "heap per idle connection (" ..
        (section.tls13 and "TLS 1.3" or "TLS 1.2") .. ")",
      args = { "mem", "ec", section.tls13 and "1.3" or "1.2", "100" }, native_only = true },
  }
  local keep = {}
  for _, r in ipairs(rows) do
    if section.tls13 or not r.tls13 then keep[#keep + 1] = r end
  end
  return keep
end

--------------------------------------------------------- running things

local function lua_groups(g)     -- x25519,secp256r1 -> OpenSSL's X25519:P-256
  local map = { x25519 = "X25519", secp256r1 = "P-256", secp384r1 = "P-384",
                secp521r1 = "P-521", x448 = "X448" }
  local out = {}
  for name in g:gmatch("[^,]+") do out[#out + 1] = map[name] or name end
  return table.concat(out, ":")
end

-- Each implementation: the environment and the program, kept apart so that
-- valgrind can go between them.
local function impls(section)
  local certs = "BENCH_CERTS=" .. sh_quote(OUT .. "/certs")
  return {
    { id = "c", name = "C (mbedtls)",
      env = certs .. " BENCH_GROUPS=" .. sh_quote(section.groups),
      prog = sh_quote(section.baseline) },
    { id = "tlspeer", name = "tlspeer",
      env = certs .. " LUA_PATH=" .. sh_quote("lua/?.lua;lua/?/init.lua;;") ..
            " LUA_CPATH=" .. sh_quote(section.cpath .. ";;"),
      prog = LUA .. " bench/tlspeer_bench.lua" },
    { id = "luasec", name = "LuaSec (OpenSSL)",
      env = certs .. " BENCH_GROUPS=" .. sh_quote(lua_groups(section.groups)),
      prog = LUA .. " bench/luasec_bench.lua",
      -- the same program in every section: measured once per work
      shared = true },
  }
end

local function command(impl, cg_out)
  local vg = cg_out and ("valgrind --tool=callgrind -q --callgrind-out-file=%s "):format(
    sh_quote(cg_out)) or ""
  return ("env %s %s%s"):format(impl.env, vg, impl.prog)
end

local function parse(text, into)
  for k, v in text:gmatch("RESULT (%S+) (%S+)") do into[k] = tonumber(v) end
  return into
end

local function cg_total(path)
  local f = io.open(path)
  if not f then return nil end
  local text = f:read("a")
  f:close()
  os.remove(path)
  local t = text:match("\ntotals: (%d+)") or text:match("\nsummary: (%d+)")
  return tonumber(t)
end

-- One network run: server, then client; returns the RESULTs of both (and,
-- under callgrind, the instructions of each process as server_ir, client_ir).
--
-- A row with `pin` (the echo: one byte back and forth, where the time is
-- the two wake-ups) runs its server on the last CPU and its client on the
-- first, for every implementation alike.  Unpinned, each repeat lands the
-- pair on one CPU or on two by chance, and that alone moves a repeat's
-- round trip by 20 % (44 µs against 54 µs here), more than the difference
-- being measured.
local cores
local function pin_prefixes(row, cg)
  if not row.pin or cg then return "", "" end
  cores = cores or tonumber(sh("nproc")) or 1
  if cores < 2 then return "", "" end
  return ("taskset -c %d "):format(cores - 1), "taskset -c 0 "
end

local function run_net(impl, row, n, size, cg)
  local args = ("%s %s %s %d %d"):format(row.test, row.cert, row.suite, n or row.n,
                                          size or row.size)
  local spin, cpin = pin_prefixes(row, cg)
  local scg = cg and os.tmpname()
  local ccg = cg and os.tmpname()
  local srv = io.popen(("%stimeout 600 %s server %s 2>>%s"):format(spin, command(impl, scg),
                                                                   args, ERRLOG), "r")
  local first = srv:read("l") or ""
  local port = first:match("^PORT (%d+)")
  if not port then
    srv:close()
    log("  %s: the server did not start (see %s)", impl.id, ERRLOG)
    return {}
  end
  local cli = io.popen(("%stimeout 600 %s client %s %s 2>>%s"):format(cpin, command(impl, ccg),
                                                                     port, args, ERRLOG), "r")
  local out = cli:read("a")
  cli:close()
  out = out .. (srv:read("a") or "")
  srv:close()
  local res = parse(out, {})
  if cg then
    res.server_ir, res.client_ir = cg_total(scg), cg_total(ccg)
    os.remove(scg); os.remove(ccg)
  end
  return res
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
  local f = io.popen(("%s crypto %s %d %d 2>>%s"):format(command(impl), row.crypto, row.n,
                                                         row.size, ERRLOG))
  local out = f:read("a")
  f:close()
  return parse(out, {})
end

-- The key of a piece of work that does not depend on the section (LuaSec's).
local function work_key(impl, row, extra)
  return table.concat({ impl.env, row.id, row.test or row.crypto or "", row.cert or "",
                        row.suite or "", row.n or "", row.size or "", extra or "" }, "|")
end

-- Wall-clock: every row, the sections and implementations interleaved.
local function measure(all)
  local order, seen = {}, {}
  for _, s in ipairs(all) do
    s.rows, s.list, s.by_id = rows_for(s), impls(s), {}
    for _, row in ipairs(s.rows) do
      s.by_id[row.id] = row
      row.samples = {}
      for _, impl in ipairs(s.list) do row.samples[impl.id] = {} end
      if not seen[row.id] then seen[row.id] = true; order[#order + 1] = row.id end
    end
  end
  local shared = {}          -- work_key .. rep -> results
  for _, id in ipairs(order) do
    local reps = 0
    for _, s in ipairs(all) do
      local row = s.by_id[id]
      if row and not row.same_as and row.reps > reps then reps = row.reps end
    end
    for rep = 1, reps do
      for k = 0, #all - 1 do
        local s = all[(rep + k - 1) % #all + 1]
        local row = s.by_id[id]
        if row and not row.same_as and rep <= row.reps then
          for j = 0, #s.list - 1 do
            local impl = s.list[(rep + j - 1) % #s.list + 1]
            local key = impl.shared and (work_key(impl, row) .. "|" .. rep)
            local res = key and shared[key]
            if not res then
              res = row.crypto and run_crypto(impl, row) or run_net(impl, row)
              if key then shared[key] = res end
            end
            for name, v in pairs(res) do
              local smp = row.samples[impl.id]
              smp[name] = smp[name] or {}
              table.insert(smp[name], v)
            end
          end
        end
      end
    end
    for _, s in ipairs(all) do
      local row = s.by_id[id]
      if row and not row.same_as then
        local parts = {}
        for _, impl in ipairs(s.list) do
          local v = median(row.samples[impl.id][row.key])
          parts[#parts + 1] = ("%s=%s"):format(impl.id, v and ("%.4g"):format(v) or "n/a")
        end
        log("%-24s %-58s %s", s.tag, row.label, table.concat(parts, " "))
      end
    end
  end
  for _, s in ipairs(all) do
    for _, row in ipairs(s.rows) do
      local src = row.same_as and s.by_id[row.same_as] or row
      row.values, row.extra = {}, {}
      for _, impl in ipairs(s.list) do
        local v = median(src.samples[impl.id][row.key])
        if v and row.scale then v = v * row.scale end
        row.values[impl.id] = v
        if row.check_reuse then row.extra[impl.id] = median(src.samples[impl.id].reused) end
      end
      if row.check_reuse then
        -- A "resumed" number only counts when the handshakes were resumed.
        for id, reused in pairs(row.extra) do
          if reused == nil or reused < (row.n - 1) then row.values[id] = nil end
        end
      end
    end
  end
end

-- Instructions of the key rows: each implementation's server and client
-- under callgrind with two amounts of work; per byte (bulk: each end seals
-- and opens the size: per byte sealed or opened, the two ends averaged) or
-- per handshake (server and client apart).  In quick mode, tlspeer only.
local function measure_instructions(all)
  local shared = {}
  for _, s in ipairs(all) do
    for _, row in ipairs(s.rows) do
      if row.cg then
        row.ir = {}
        for _, impl in ipairs(s.list) do
          if not Q or impl.id == "tlspeer" then
            local key = impl.shared and work_key(impl, row, "cg")
            local r = key and shared[key]
            if not r then
              local a, b
              if row.test == "bulk" then
                a = run_net(impl, row, 1, row.cg[1], true)
                b = run_net(impl, row, 1, row.cg[2], true)
              else
                a = run_net(impl, row, row.cg[1], 0, true)
                b = run_net(impl, row, row.cg[2], 0, true)
              end
              if a.server_ir and b.server_ir and a.client_ir and b.client_ir then
                local d = row.cg[2] - row.cg[1]
                if row.test == "bulk" then
                  r = { per_byte = ((b.server_ir - a.server_ir) + (b.client_ir - a.client_ir))
                                   / (4 * d) }
                else
                  r = { server = (b.server_ir - a.server_ir) / d,
                        client = (b.client_ir - a.client_ir) / d }
                end
              else
                r = {}
                log("  %s %s %s: no callgrind counts (see %s)", s.tag, row.id, impl.id, ERRLOG)
              end
              if key then shared[key] = r end
            end
            row.ir[impl.id] = r
          end
        end
        log("%-24s %-58s instructions measured", s.tag, row.label)
      end
    end
  end
end

-- bench/engine.c in every section: callgrind counts, then native runs.
local function measure_engine(all)
  for _, s in ipairs(all) do
    s.engine_rows = engine_rows(s)
    for _, r in ipairs(s.engine_rows) do
      r.res, r.wall = {}, {}
      if use_callgrind and not r.native_only then
        local args = {}
        for i, a in ipairs(r.args) do args[i] = sh_quote(a) end
        local amount = r.size or r.n
        local f = io.popen(("env BENCH_CERTS=%s bench/callgrind.sh %s %s %d 2>>%s"):format(
          sh_quote(OUT .. "/certs"), sh_quote(s.engine), table.concat(args, " "), amount, ERRLOG))
        local text = f:read("a")
        f:close()
        for fn, v in text:gmatch("IR (%S+) (%d+)") do
          local per = r.size and tonumber(v) / (2 * r.size) or tonumber(v) / r.n
          r.res[fn] = per
        end
      end
    end
  end
  -- Native: three rounds, the builds interleaved.
  for round = 1, Q and 1 or 3 do
    for k = 0, #all - 1 do
      local s = all[(round + k - 1) % #all + 1]
      for _, r in ipairs(s.engine_rows) do
        local args = {}
        for i, a in ipairs(r.args) do args[i] = sh_quote(a) end
        local amount = r.native_only and "" or tostring(r.wall_size or r.wall_n)
        local f = io.popen(("env BENCH_CERTS=%s %s %s %s 2>>%s"):format(
          sh_quote(OUT .. "/certs"), sh_quote(s.engine), table.concat(args, " "), amount, ERRLOG))
        local res = parse(f:read("a"), {})
        f:close()
        for key, v in pairs(res) do
          r.wall[key] = r.wall[key] or {}
          table.insert(r.wall[key], v)
        end
      end
    end
  end
  log("engine: instructions and wall-clock measured")
end

---------------------------------------------------------------- report

local function fmt(v)
  if v == nil then return "N/A" end
  if v >= 1000 then return ("%.0f"):format(v) end
  if v >= 100 then return ("%.1f"):format(v) end
  if v >= 10 then return ("%.2f"):format(v) end
  return ("%.3f"):format(v)
end

local function mega(v)
  if v == nil then return "N/A" end
  return ("%.2f M"):format(v / 1e6)
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

-- An instruction cell: "12.3" instructions per byte, or "1.23 M / 4.56 M"
-- per handshake (server / client).
local function ir_cell(row, id)
  local r = row.ir and row.ir[id]
  if not r then return "" end
  if r.per_byte then return ("%.2f"):format(r.per_byte) end
  if r.server then return mega(r.server) .. " / " .. mega(r.client) end
  return "N/A"
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
    valgrind = sh("valgrind --version"),
  }
end

-- The chart: each implementation's speed relative to the C baseline
-- (higher is better: for "lower is better" rows, C's value / theirs).
local function chart(section)
  local tag = "mbedtls-" .. section.version:match("^%d+%.%d+") ..
              (section.tag == "system" and "" or "-" .. section.tag)
  local dat = ("%s/chart-%s.dat"):format(OUT, tag)
  local png = ("bench/chart-%s.png"):format(tag)
  local f = assert(io.open(dat, "w"))
  f:write("# row tlspeer luasec (speed relative to C = 1)\n")
  for _, row in ipairs(section.rows) do
    local v = row.values
    if v.c and (v.tlspeer or v.luasec) then
      local function rel(x)
        if not x or x == 0 then return "NaN" end
        return ("%.4f"):format(row.better == "higher" and x / v.c or v.c / x)
      end
      f:write(('"%s" %s %s\n'):format(row.id:gsub("_", "-"), rel(v.tlspeer), rel(v.luasec)))
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
  return ok and png or nil
end

-- The builds side by side: the engine's instructions and wall-clock per
-- phase, then tlspeer's own rows.
local function write_side_by_side(w, all)
  local first = all[1]
  w("## The builds side by side\n\n")
  w("One column per build, all measured in this run. **Instructions** are callgrind's ",
    "counts (`bench/engine.c`: mbedtls alone, client and server in one process over memory, ",
    "each phase a function of its own; the count of the same work is the same on every run: ",
    "exactly for bulk, within about 1 % for handshakes, whose public-key arithmetic is blinded with random numbers), ",
    "**wall-clock** the same program run natively", Q and "" or " (median of three, the builds interleaved)",
    ": it moves with whatever else the machine runs. Key exchange groups in the order ",
    "tlspeer offers them in each build (read off its ClientHello): ")
  local gs = {}
  for _, s in ipairs(all) do gs[#gs + 1] = ("%s: %s"):format(s.short, s.groups) end
  w(table.concat(gs, "; "), ".\n\n")
  w("| work | unit |")
  for _, s in ipairs(all) do w(" ", s.short, " |") end
  for i = 2, #all do w(" ", first.short, " / ", all[i].short, " |") end
  w("\n|---|---|")
  for _ = 1, #all do w("--:|") end
  for _ = 2, #all do w("--:|") end
  w("\n")
  local function line(label, unit, get, lower_better)
    local vals, any = {}, false
    for i, s in ipairs(all) do
      vals[i] = { get(s) }
      if vals[i][1] then any = true end
    end
    if not any then return end
    w("| ", label, " | ", unit, " |")
    for i = 1, #all do
      local a, b = vals[i][1], vals[i][2]
      if a == nil then w(" — |")
      elseif b ~= nil then w(" ", fmt(a), " / ", fmt(b), " |")
      else w(" ", fmt(a), " |") end
    end
    for i = 2, #all do
      local a1, a2 = vals[1][1], vals[i][1]
      local b1, b2 = vals[1][2], vals[i][2]
      local r1, r2 = ratio(a1, a2), ratio(b1, b2)
      if r1 and r2 then w((" %.2f / %.2f |"):format(r1, r2))
      elseif r1 then w((" %.2f |"):format(r1))
      else w(" — |") end
    end
    w("\n")
  end
  local function erow(s, id)
    for _, r in ipairs(s.engine_rows or {}) do if r.id == id then return r end end
  end
  for _, id in ipairs { "bulk_aes12", "bulk_aes13", "bulk_chacha12", "hs_ec12", "hs_rsa12",
                        "hs_ec13", "hs_rsa13", "mem" } do
    local proto
    for _, s in ipairs(all) do proto = proto or erow(s, id) end
    if proto then
      if id:match("^bulk") then
        line(proto.label .. ", engine: instructions", "per byte (seal / open)", function(s)
          local r = erow(s, id)
          if r and r.res.seal then return r.res.seal, r.res.open_ end
        end)
        line(proto.label .. ", engine: wall-clock", "ns per byte (seal / open)", function(s)
          local r = erow(s, id)
          if r then return median(r.wall.seal_ns_per_byte), median(r.wall.open_ns_per_byte) end
        end)
      elseif id:match("^hs") then
        line(proto.label .. ", engine: instructions", "M per handshake (server / client)", function(s)
          local r = erow(s, id)
          if r and r.res.server_handshake then
            return r.res.server_handshake / 1e6, r.res.client_handshake / 1e6
          end
        end)
        line(proto.label .. ", engine: wall-clock", "ms per handshake (server / client)", function(s)
          local r = erow(s, id)
          local a = r and median(r.wall.server_handshake_ns)
          if a then return a / 1e6, median(r.wall.client_handshake_ns) / 1e6 end
        end)
      else
        line("heap per idle connection, engine", "KiB (server / client)", function(s)
          local r = erow(s, id)
          local a = r and median(r.wall.server_heap_per_conn)
          if a then return a / 1024, median(r.wall.client_heap_per_conn) / 1024 end
        end)
      end
    end
  end
  -- tlspeer (Lua, over loopback) from the sections' own tables.
  local function trow(s, id)
    return s.by_id and s.by_id[id]
  end
  for _, id in ipairs { "bulk_aes", "bulk_aes13", "bulk_chacha", "hs_ec", "hs_rsa", "mem_server" } do
    local proto
    for _, s in ipairs(all) do proto = proto or trow(s, id) end
    if proto then
      local label = "tlspeer: " .. proto.label:gsub(", TLS 1%.[23]", ", TLS 1.3 (2.28: 1.2)")
      line(label .. ", wall-clock", proto.unit, function(s)
        local r = trow(s, id)
        if r then return r.values.tlspeer end
      end)
      if proto.cg then
        if id:match("^bulk") then
          line(label .. ", instructions", "per byte", function(s)
            local r = trow(s, id)
            local x = r and r.ir and r.ir.tlspeer
            if x then return x.per_byte end
          end)
        else
          line(label .. ", instructions", "M per handshake (server / client)", function(s)
            local r = trow(s, id)
            local x = r and r.ir and r.ir.tlspeer
            if x and x.server then return x.server / 1e6, x.client / 1e6 end
          end)
        end
      end
    end
  end
  w("\nRatios: the first build's value over the other's (for instructions, ns, ms and ",
    "KiB lower is better; for MB/s and hs/s higher is better). The handshake rows of ",
    "tlspeer use TLS 1.3 on mbedtls 3.6 and TLS 1.2 on 2.28 (which has no TLS 1.3); ",
    "the engine rows compare both protocols like for like.\n\n")
end

local function write_report(m, all, elapsed)
  local f = assert(io.open("BENCHMARKS.md", "w"))
  local w = function(...) f:write(...) end
  w("# tlspeer benchmarks\n\n")
  w("Written by `make bench", quick and " QUICK=1" or "", "` (bench/run.lua) from the numbers it measured",
    " on ", os.date("!%Y-%m-%d %H:%M UTC"), ", in ", ("%.0f"):format(elapsed), " s",
    quick and " — **quick mode**: fewer rows, small sizes and counts, fewer repeats, instructions of tlspeer's key rows only; run `make bench` for the full numbers" or "",
    ". Do not edit the numbers by hand: run it again.\n\n")
  w("Three builds of mbedtls, each checked to be what its section says before it is measured ",
    "(bench/run.sh: mbedtls' version, the tlspeer module loaded, the build marker of ",
    "`scripts/mbedtls3.sh`):\n\n")
  for _, s in ipairs(all) do
    w("- **", s.name, "** (`", s.tag, "`): ", s.about, "\n")
  end
  w("\nand three implementations of the same work, run side by side in one run over loopback ",
    "(server and client in two processes; pinned to a CPU each for the 1-byte echo only), ",
    "interleaved, the order rotating ",
    "each repeat, so that the ratios hold on a noisy machine:\n\n",
    "- **tlspeer** — `bench/tlspeer_bench.lua`, the public API from Lua 5.4 ",
    "(TCPServer, StreamPeerTCP, StreamPeerTLS with blocking `get_data`/`put_data`, ",
    "TLSOptions with `ciphersuites`, Crypto, HashingContext);\n",
    "- **C** — `bench/baseline.c`, mbedtls called directly, built against the same mbedtls ",
    "as that tlspeer build and configured alike (client verifies the server, AES-256-GCM ",
    "session tickets, TCP_NODELAY, the same cipher suite, the key exchange groups in ",
    "tlspeer's order): the limit for this engine;\n",
    "- **LuaSec** — `bench/luasec_bench.lua`, LuaSec on LuaSocket (OpenSSL), ",
    "the same suite and key exchange groups.\n\n")
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
  w("| callgrind | ", use_callgrind and m.valgrind or "not used (--no-callgrind)", " |\n")
  for _, s in ipairs(all) do
    w("| ", s.name, " | ", s.version, " (tlspeer: `", s.cpath, "`, C: `", s.baseline,
      "`, engine: `", s.engine, "`) |\n")
  end
  w("\n")
  write_side_by_side(w, all)
  for _, s in ipairs(all) do
    w("## ", s.name, "\n\n")
    w("Median of the repeats (shown as ×N). Ratios are of the values as shown: for MB/s and ",
      "hs/s higher is better; for KiB, ns, µs and ms lower is better.",
      use_callgrind and (" Instructions (callgrind, the difference of two runs): per byte " ..
        "sealed or opened (bulk), in millions per handshake, server / client (handshakes)" ..
        (Q and "; tlspeer only in quick mode." or ".")) or "", "\n\n")
    w("| work | unit | tlspeer | C (mbedtls) | LuaSec (OpenSSL) | tlspeer/C | tlspeer/LuaSec | target |",
      use_callgrind and " instructions: tlspeer | C | LuaSec |" or "", "\n")
    w("|---|---|--:|--:|--:|--:|--:|---|", use_callgrind and "--:|--:|--:|" or "", "\n")
    for _, row in ipairs(s.rows) do
      local v = row.values
      local src_reps = row.reps or 3
      if row.same_as then src_reps = s.by_id[row.same_as].reps end
      local label = row.label
      if row.test == "bulk" then
        label = label .. (" (%d MiB each way)"):format(row.size // MiB)
      elseif row.test == "hs" or row.test == "resume" then
        label = label .. (" (%d connections)"):format(row.n)
      elseif row.test == "mem" or row.same_as then
        label = label .. (" (%d connections)"):format(s.by_id.mem_server.n)
      end
      if row.check_reuse then
        local parts = {}
        for _, impl in ipairs(s.list) do
          local x = row.extra[impl.id]
          parts[#parts + 1] = ("%s %s"):format(impl.id, x and ("%d/%d"):format(x, row.n - 1) or "?")
        end
        label = label .. "; resumed: " .. table.concat(parts, ", ")
      end
      w("| ", label, " ×", src_reps, " | ", row.unit, " | ", fmt(v.tlspeer), " | ", fmt(v.c), " | ",
        row.id == "sha256" and (v.luasec and fmt(v.luasec) .. " (openssl speed)" or "N/A") or fmt(v.luasec),
        " | ", fmt(ratio(v.tlspeer, v.c)), " | ", fmt(ratio(v.tlspeer, v.luasec)), " | ",
        verdict(row), " |")
      if use_callgrind then
        w(" ", ir_cell(row, "tlspeer"), " | ", ir_cell(row, "c"), " | ", ir_cell(row, "luasec"), " |")
      end
      w("\n")
    end
    w("\n")
    if s.png then
      w("![", s.name, ": speed relative to the C baseline](", s.png, ")\n\n")
    end
  end
  -- The frame and scale sections (bench/sections.sh, run before this).
  local frames = io.open(OUT .. "/sections.md")
  if frames then
    w("## Frames and scale\n\n",
      "`bench/sections.sh`: the frame section (every call into tlspeer timed in a 60 fps ",
      "loop) and the scale section (N idle connections against cqueues + luaossl); ",
      "`bench/SECTIONS.md` says how each is measured.\n\n", frames:read("a"), "\n")
    frames:close()
  end
  local notes = io.open("bench/NOTES.md")
  if notes then w(notes:read("a")); notes:close() end
  f:close()
end

------------------------------------------------------------------ main

local t0 = clock()
local m = machine()
for _, s in ipairs(sections) do
  s.version = sh(("%s version | sed -n 's/^mbedtls_version //p'"):format(sh_quote(s.baseline)))
  -- The groups tlspeer offers (its ClientHello): the C programs get the same.
  s.groups = sh(("env BENCH_CERTS=%s LUA_PATH=%s LUA_CPATH=%s %s bench/tlspeer_bench.lua groups"):format(
    sh_quote(OUT .. "/certs"), sh_quote("lua/?.lua;lua/?/init.lua;;"), sh_quote(s.cpath .. ";;"),
    LUA)):match("^groups (%S+)") or error("cannot read the groups tlspeer offers (" .. s.tag .. ")")
  s.short = ({ tlspeer = "tlspeer's " .. s.version, debian = "Debian's " .. s.version,
               system = "Debian's " .. s.version })[s.tag] or s.tag
  s.about = ({
    tlspeer = "`scripts/mbedtls3.sh tlspeer`: tlspeer's configuration and flags, `scripts/mbedtls-tlspeer.cfg`",
    debian = "`scripts/mbedtls3.sh debian`: Debian trixie's source package built with the configuration of its `debian/rules`, CMake Release (-O2)",
    system = "the system's `libmbedtls` of Debian bookworm (shared libraries)",
  })[s.tag] or s.tag
end
measure(sections)
log("wall-clock rows: %.0f s", clock() - t0)
local t1 = clock()
if use_callgrind then
  measure_instructions(sections)
  log("instructions of the key rows: %.0f s", clock() - t1)
end
t1 = clock()
measure_engine(sections)
log("engine: %.0f s", clock() - t1)
for _, s in ipairs(sections) do s.png = chart(s) end
write_report(m, sections, clock() - t0)
log("wrote BENCHMARKS.md (%.0f s)", clock() - t0)
