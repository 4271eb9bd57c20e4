-- The reference in docs/ and the LuaLS definitions in meta/ against the
-- module as it is at run time: every class table on the module, its
-- constructors, methods (as instances and the class's __index reach them),
-- constants and events; every module function and field; the helper
-- objects of tls.listen / tls.connect and their events; tls.pipe's ends.
-- Each must be a level-3 heading of its page (the text starting with the
-- name in backticks) and be declared in meta/.  Also: links between the
-- pages resolve, every Lua block of the docs compiles, the porting guide
-- covers the seed's GDScript, and the meta files load and name only types
-- they declare.
local H = require "helpers"
local tls = H.tls

-------------------------------------------------------------- the pages

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function list_dir(dir, ext)
  local names = {}
  local p = assert(io.popen("ls " .. H.q(dir) .. " 2>/dev/null"))
  for name in p:lines() do
    if name:sub(-#ext) == ext then names[#names + 1] = name end
  end
  p:close()
  table.sort(names)
  return names
end

-- The name a heading documents: "`connect_to_stream(stream, ...)`" ->
-- nil, "connect_to_stream"; "`tls.request(url, opts)`" -> "tls", "request";
-- "`server:on(\"data_received\", ...)`" -> "server", "data_received", true
-- (an event).
local function heading_name(text)
  local code = text:match("^`([^`]+)`")
  if not code then return nil end
  local q, event = code:match('^([%w_]+)[:.]on%(%s*"([%w_]+)"')
  if q then return q, event, true end
  event = code:match('^"([%w_]+)"')
  if event then return nil, event, true end
  local qual, name = code:match("^([%w_%.]+)[:.]([%w_]+)")
  if qual then return qual, name end
  return nil, code:match("^([%w_]+)")
end

-- GitHub's anchor of a heading.
local function slug(text)
  return (text:lower():gsub("[^%w%- _]", ""):gsub(" ", "-"))
end

local pages = {}          -- file name -> { text, names = {[name] = true},
                          --   qualified = {[q] = {[name] = true}}, anchors }
local function page(file)
  if pages[file] ~= nil then return pages[file] or nil end
  local text = read("docs/" .. file)
  if not text then pages[file] = false; return nil end
  local p = { text = text, names = {}, qualified = {}, events = {}, anchors = {}, file = file }
  local fenced = false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^```") then fenced = not fenced end
    local hashes, title = line:match("^(#+)%s+(.-)%s*$")
    if hashes and not fenced then
      p.anchors[slug(title)] = true
      -- "`set_x(v)` / `get_x()`" documents both names.
      for part in (#hashes == 3 and (title .. " / ") or ""):gmatch("(.-)%s+/%s+") do
        local q, name, is_event = heading_name(part)
        if name then
          p.names[name] = true
          if q then
            p.qualified[q] = p.qualified[q] or {}
            p.qualified[q][name] = true
          end
          if is_event then
            p.events[(q or "") .. ":" .. name] = true
            p.events[name] = true
          end
        end
      end
    end
  end
  pages[file] = p
  return p
end

-- The pages a class page inherits ("Inherits: [StreamPeer](StreamPeer.md)").
local function documented(file)
  local p = page(file)
  if not p then return nil end
  local names = {}
  for n in pairs(p.names) do names[n] = true end
  for target in (p.text:match("\nInherits:[^\n]*") or ""):gmatch("%]%(([%w_%-]+%.md)%)") do
    local parent = page(target)
    if parent then for n in pairs(parent.names) do names[n] = true end end
  end
  return names
end

------------------------------------------------------- the module's names

local function is_public(name)
  return type(name) == "string" and name:sub(1, 1) ~= "_"
end

-- A table's functions, following __index tables through metatables.
local function functions_of(t, out, seen)
  out, seen = out or {}, seen or {}
  while type(t) == "table" and not seen[t] do
    seen[t] = true
    for k, v in pairs(t) do
      if is_public(k) and type(v) == "function" then out[k] = true end
    end
    local mt = getmetatable(t)
    t = type(mt) == "table" and rawget(mt, "__index") or nil
  end
  return out
end

local function classes()
  local list = {}
  for name, v in pairs(tls) do
    if type(name) == "string" and name:match("^%u") and type(v) == "table" then
      list[#list + 1] = name
    end
  end
  table.sort(list)
  return list
end

-- An instance of a class: from new(), or another constructor that takes
-- no argument (TLSOptions.client_unsafe).
local function instance_of(class)
  local ctors = {}
  if type(class.new) == "function" then ctors[1] = class.new end
  for k, v in pairs(class) do
    if is_public(k) and k ~= "new" and type(v) == "function" then ctors[#ctors + 1] = v end
  end
  for _, f in ipairs(ctors) do
    local ok, obj = pcall(f)
    if ok and (type(obj) == "userdata" or type(obj) == "table") and getmetatable(obj) then
      return obj
    end
  end
end

-- What a class must document: its statics, constants, methods, events.
local function class_names(class)
  local names, events = {}, {}
  for k, v in pairs(class) do
    if is_public(k) then names[k] = type(v) == "function" and "function" or "constant" end
  end
  local mt = getmetatable(class)
  if type(mt) == "table" and type(rawget(mt, "__index")) == "table" then
    for k in pairs(functions_of(mt.__index)) do names[k] = "method" end
  end
  local obj = instance_of(class)
  if obj then
    local imt = getmetatable(obj)
    if type(imt) == "table" and type(imt.__index) == "table" then
      for k in pairs(functions_of(imt.__index)) do names[k] = names[k] or "method" end
    end
    local ev = type(obj) == "table" and rawget(obj, "_events")
    if type(ev) == "table" then
      for e in pairs(ev) do events[#events + 1] = e end
    end
    if type(obj.close) == "function" then pcall(obj.close, obj) end
  end
  return names, events
end

------------------------------------------------------------------ docs

describe("docs/", function()
  it("has an index that links every class page, module.md, helpers.md and the porting guide", function()
    local index = assert(page("README.md"), "docs/README.md is missing")
    for _, name in ipairs(classes()) do
      assert.truthy(index.text:find("(" .. name .. ".md)", 1, true),
        "docs/README.md does not link " .. name .. ".md")
    end
    for _, f in ipairs { "module.md", "helpers.md", "porting-from-godot.md" } do
      assert.truthy(index.text:find("(" .. f .. ")", 1, true), "docs/README.md does not link " .. f)
    end
    local readme = assert(read("README.md"))
    assert.truthy(readme:find("docs/README.md", 1, true), "README.md does not link docs/README.md")
  end)

  it("has a page per class that says which Godot class it follows and what is ours", function()
    local missing = {}
    for _, name in ipairs(classes()) do
      local p = page(name .. ".md")
      if not p then
        missing[#missing + 1] = "docs/" .. name .. ".md"
      else
        local first = p.text:match("^#[^\n]*\n+(.-)\n\n")
        if not (first and first:find("Godot", 1, true) and first:lower():find("ours", 1, true)) then
          missing[#missing + 1] = "docs/" .. name .. ".md: the paragraph after the title does not "
            .. "name the Godot class it follows and what is ours"
        end
      end
    end
    assert.same({}, missing)
  end)

  it("documents every constructor, method, constant and event of every class", function()
    local undocumented = {}
    for _, name in ipairs(classes()) do
      local doc = documented(name .. ".md") or {}
      local names, events = class_names(tls[name])
      local sorted = {}
      for n in pairs(names) do sorted[#sorted + 1] = n end
      table.sort(sorted)
      for _, n in ipairs(sorted) do
        if not doc[n] then
          undocumented[#undocumented + 1] = ("%s.%s (%s)"):format(name, n, names[n])
        end
      end
      table.sort(events)
      for _, e in ipairs(events) do
        if not doc[e] then undocumented[#undocumented + 1] = ("%s event %s"):format(name, e) end
      end
    end
    assert.same({}, undocumented)
  end)

  it("documents every module function and field", function()
    local module = assert(page("module.md"), "docs/module.md is missing")
    local doc = {}
    for n in pairs(module.names) do doc[n] = true end
    for _, f in ipairs(list_dir("docs", ".md")) do
      local q = page(f).qualified.tls
      if q then for n in pairs(q) do doc[n] = true end end
    end
    local undocumented = {}
    for k, v in pairs(tls) do
      if type(k) == "string" and not (k:match("^%u") and type(v) == "table")
          and (is_public(k) or k == "_VERSION") and not doc[k] then
        undocumented[#undocumented + 1] = "tls." .. k
      end
    end
    table.sort(undocumented)
    assert.same({}, undocumented)
  end)

  it("documents the methods of tls.pipe()'s ends", function()
    local a = tls.pipe()
    local doc = page("module.md").qualified.pipe_end or {}
    local undocumented = {}
    for k in pairs(functions_of(getmetatable(a).__index)) do
      if not doc[k] then undocumented[#undocumented + 1] = "pipe_end:" .. k end
    end
    table.sort(undocumented)
    assert.same({}, undocumented)
  end)

  it("documents the objects of tls.listen and tls.connect, and their events", function()
    local helpers = assert(page("helpers.md"), "docs/helpers.md is missing")
    local server = assert(tls.listen { port = 0, bind = "127.0.0.1",
      certificate = "certs/server.crt", key = "certs/server.key" })
    local client = tls.connect { host = "127.0.0.1", port = server:get_local_port(),
      trusted = "certs/ca.crt", common_name = "localhost" }
    local conn
    server:on("connection_established", function(c) conn = c end)
    for _ = 1, 5000 do
      tls.poll()
      if conn and client:get_status() == tls.StreamPeerTLS.STATUS_CONNECTED then break end
      tls.sleep(0.001)
    end
    assert.truthy(conn, "no connection came")
    local undocumented = {}
    for q, obj in pairs { server = server, conn = conn, client = client } do
      local doc = helpers.qualified[q] or {}
      for k in pairs(functions_of(getmetatable(obj).__index)) do
        if not doc[k] then undocumented[#undocumented + 1] = q .. ":" .. k end
      end
      for e in pairs(rawget(obj, "_events") or {}) do
        if not helpers.events[q .. ":" .. e] then
          undocumented[#undocumented + 1] = q .. ' event "' .. e .. '"'
        end
      end
    end
    for _, f in ipairs { "listen", "connect" } do
      if not (helpers.qualified.tls or {})[f] then undocumented[#undocumented + 1] = "tls." .. f end
    end
    client:close()
    server:stop()
    table.sort(undocumented)
    assert.same({}, undocumented)
  end)

  it("has links that resolve, to pages and to their headings", function()
    local files = {}
    for _, f in ipairs(list_dir("docs", ".md")) do files[#files + 1] = "docs/" .. f end
    files[#files + 1] = "README.md"
    local broken = {}
    for _, path in ipairs(files) do
      local text = read(path):gsub("\n```.-\n```", "")
      local dir = path:match("^(.*)/") or "."
      for target in text:gmatch("%]%(([^)%s]+)%)") do
        if not target:match("^%a[%w+.-]*:") then
          local file, anchor = target:match("^([^#]*)#?(.*)$")
          local resolved = file == "" and path or (dir .. "/" .. file)
          local body = read(resolved)
          if not body and not H.exists(resolved) then
            broken[#broken + 1] = path .. ": " .. target
          elseif anchor ~= "" and resolved:match("%.md$") then
            local anchors = {}
            local fenced = false
            for line in (body .. "\n"):gmatch("([^\n]*)\n") do
              if line:match("^```") then fenced = not fenced end
              local title = line:match("^#+%s+(.-)%s*$")
              if title and not fenced then anchors[slug(title)] = true end
            end
            if not anchors[anchor] then broken[#broken + 1] = path .. ": " .. target end
          end
        end
      end
    end
    assert.same({}, broken)
  end)

  it("has Lua examples that compile on this Lua", function()
    local files = {}
    for _, f in ipairs(list_dir("docs", ".md")) do files[#files + 1] = "docs/" .. f end
    files[#files + 1] = "README.md"
    local bad = {}
    for _, path in ipairs(files) do
      local n = 0
      for block in read(path):gmatch("\n```lua\n(.-)\n```") do
        n = n + 1
        if not (block:find("<close>", 1, true) and _VERSION ~= "Lua 5.4") then
          local f, err = H.load_string(block, "=" .. path .. " block " .. n)
          if not f then bad[#bad + 1] = err end
        end
      end
    end
    assert.same({}, bad)
  end)

  it("ports every GDScript snippet of the seed pages", function()
    local guide = assert(page("porting-from-godot.md"), "docs/porting-from-godot.md is missing")
    local gd, lua = {}, {}
    for block in guide.text:gmatch("\n```gdscript\n(.-)\n```") do gd[#gd + 1] = block end
    for block in guide.text:gmatch("\n```lua\n(.-)\n```") do lua[#lua + 1] = block end
    gd, lua = table.concat(gd, "\n"), table.concat(lua, "\n")
    -- The seed's GDScript, call by call, and what the Lua side must use.
    local seed = {
      { "tcp_server.listen(8443)", "listen(" },
      { "set_certificate_file(\"res://certs/server.crt\")", "TLSOptions.server(" },
      { "set_private_key_file(\"res://certs/server.key\")", "certs/server.key" },
      { "is_connection_available()", "is_connection_available()" },
      { "take_connection()", "take_connection()" },
      { "set_connection(tcp)", "accept_stream(" },
      { "connect(\"connection_established\"", "on(\"connection_established\"" },
      { "connect(\"data_received\"", "on(\"data_received\"" },
      { "get_string(tls_server.get_available_bytes())", "get_available_bytes()" },
      { "connect(\"connection_failed\"", "on(\"connection_failed\"" },
      { "connect_to_host(\"localhost\", 8443, true)", "connect_to_stream(" },
      { "put_utf8_string(\"Hello, secure world!\\n\")", "put_utf8_string(" },
      { "set_peer_certificate(\"res://certs/client.crt\"", "certificate = " },
      { "HTTPClient.new()", "HTTPClient.new()" },
      { "connect_to_host(\"example.com\", 443, true)", "connect_to_host(\"example.com\", 443," },
      { "HTTPClient.STATUS_CONNECTING", "HTTPClient.STATUS_CONNECTING" },
      { "request(HTTPClient.METHOD_GET, \"/\")", "request(HTTPClient.METHOD_GET, \"/\"" },
      { "HTTPClient.STATUS_REQUESTING", "HTTPClient.STATUS_REQUESTING" },
      { "read_response_body_chunk()", "read_response_body_chunk()" },
      { "yield(get_tree(), \"idle_frame\")", "tls.sleep(" },
      { "generate_self_signed_certificate(", "generate_self_signed_certificate(" },
    }
    local missing = {}
    for _, pair in ipairs(seed) do
      if not gd:find(pair[1], 1, true) then missing[#missing + 1] = "GDScript: " .. pair[1] end
      if not lua:find(pair[2], 1, true) then missing[#missing + 1] = "Lua: " .. pair[2] end
    end
    for _, text in ipairs { "set_verify_mode(StreamPeerTLS.VERIFY_NONE)", "client_unsafe()",
                            "certificate_bundle_override", "set_certificate_bundle_override",
                            "openssl genrsa", "make certs", "get_system_ca_certificates" } do
      if not guide.text:find(text, 1, true) then missing[#missing + 1] = "text: " .. text end
    end
    for _, section in ipairs { "## 2.1", "## 3.1", "## 3.2", "### Client certificate", "## 3.3",
                               "## 4." } do
      if not guide.text:find("\n" .. section, 1, true) then
        missing[#missing + 1] = "section " .. section
      end
    end
    assert.same({}, missing)
  end)
end)

------------------------------------------------------------------ meta

describe("meta/ (LuaLS definitions)", function()
  local files = list_dir("meta", ".lua")

  local function meta(name) return read("meta/" .. name) end

  it("has a file per class and one for the module, each ---@meta", function()
    local missing = {}
    for _, name in ipairs(classes()) do
      local text = meta(name .. ".lua")
      if not text then missing[#missing + 1] = "meta/" .. name .. ".lua"
      elseif not text:match("^%-%-%-@meta") then missing[#missing + 1] = name .. ": no ---@meta" end
    end
    if not meta("tlspeer.lua") then missing[#missing + 1] = "meta/tlspeer.lua" end
    assert.same({}, missing)
  end)

  it("loads on this Lua (the definitions are valid Lua)", function()
    for _, f in ipairs(files) do
      local fn, err = loadfile("meta/" .. f)
      assert.truthy(fn, err)
    end
  end)

  it("declares every name of every class and of the module", function()
    local undeclared = {}
    for _, name in ipairs(classes()) do
      local text = meta(name .. ".lua") or ""
      -- StreamPeer methods are declared once, on the shared class.
      local shared = text:match("%-%-%-@class [%w_.]+%s*:%s*([%w_.]+)")
      if shared then
        local base = meta((shared:match("([%w_]+)$")) .. ".lua")
        if base then text = text .. base end
      end
      local names = class_names(tls[name])
      for n in pairs(names) do
        if not (text:find("[.:]" .. n .. "%(") or text:find("@field%s+" .. n .. "[%s?]")
                or text:find("[.]" .. n .. "%s*=")) then
          undeclared[#undeclared + 1] = name .. "." .. n
        end
      end
    end
    local mod = meta("tlspeer.lua") or ""
    for k, v in pairs(tls) do
      if type(k) == "string" and (is_public(k) or k == "_VERSION") then
        local ok = mod:find("[.:]" .. k .. "%f[^%w_]") or mod:find("@field%s+" .. k .. "%f[^%w_]")
        if not ok then undeclared[#undeclared + 1] = "tls." .. k .. " (" .. type(v) .. ")" end
      end
    end
    table.sort(undeclared)
    assert.same({}, undeclared)
  end)

  it("names only types that it declares or that LuaLS knows", function()
    local builtin = {}
    for t in ("nil any boolean string number integer function table thread userdata "
              .. "lightuserdata file* unknown self true false"):gmatch("%S+") do builtin[t] = true end
    local declared, texts = {}, {}
    for _, f in ipairs(files) do
      local text = meta(f)
      texts[f] = text
      for n in text:gmatch("%-%-%-@class%s+([%w_.]+)") do declared[n] = true end
      for n in text:gmatch("%-%-%-@alias%s+([%w_.]+)") do declared[n] = true end
    end
    local unknown = {}
    local function check(types, where)
      -- strip string literals, function signatures' parameter names
      types = types:gsub('"[^"]*"', ""):gsub("'[^']*'", "")
      types = types:gsub("fun%(", "("):gsub("([%w_]+)%s*:", "")
      for t in types:gmatch("[%a_][%w_.%*]*") do
        if not builtin[t] and not declared[t] then unknown[#unknown + 1] = where .. ": " .. t end
      end
    end
    for f, text in pairs(texts) do
      for line in text:gmatch("[^\n]+") do
        local ty = line:match("^%-%-%-@param%s+[%w_.]+%??%s+(.-)%s*$")
          or line:match("^%-%-%-@return%s+(.-)%s*$")
          or line:match("^%-%-%-@field%s+[%w_]+%??%s+(.-)%s*$")
          or line:match("^%-%-%-@type%s+(.-)%s*$")
          or line:match("^%-%-%-@alias%s+[%w_.]+%s+(.-)%s*$")
        if ty then
          -- @return's name and description follow the type; @param and
          -- @field descriptions follow a '#' or the type's end.
          ty = ty:gsub("%s*#.*$", "")
          if line:match("^%-%-%-@return") or line:match("^%-%-%-@param") or line:match("^%-%-%-@field") then
            ty = ty:match("^(%S+)") or ty
          end
          check(ty, f)
        end
      end
    end
    table.sort(unknown)
    assert.same({}, unknown)
  end)

  it("passes lua-language-server --check where it is installed, else loads as Lua with ---@meta first", function()
    if not H.run("command -v lua-language-server >/dev/null") then
      -- Neither Debian 12 nor npm provides it: what can be checked without
      -- it is that each file is a definition file that compiles.
      local files = 0
      local p = assert(io.popen("ls meta/*.lua"))
      for f in p:lines() do
        files = files + 1
        local src = H.read(f)
        assert.matches("^%-%-%-@meta", src, nil, false, f)
        assert.truthy(H.load_string(src, "@" .. f), f)
      end
      p:close()
      assert.is_true(files >= 10)
      return
    end
    local dir = H.tmpdir()
    local ok, out = H.run("cd meta && lua-language-server --check . --checklevel=Warning "
      .. "--logpath " .. H.q(dir) .. " 2>&1")
    H.cleanup()
    assert.is_true(ok, out)
    assert.falsy(out:find("[1-9]%d* problems? found"), out)
  end)
end)
