-- Lets the examples run from a checkout (lua5.4 examples/x.lua, or luajit,
-- lua5.1...) as well as with tlspeer installed: the Lua layer from lua/,
-- the C core from the build directory of the running Lua (what `make
-- LUA=...` builds: build/ for 5.4, build-luajit/, build-lua5.1/...), or
-- from $TLSPEER_BUILD.  (Outside a checkout: eval "$(make -s env)", or
-- make install, and plain require "tlspeer" works.)  Returns the checkout.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local root = here .. "/.."
local build = os.getenv("TLSPEER_BUILD")
if not build then
  local v = _VERSION:match("%d+%.%d+")
  build = rawget(_G, "jit") and "build-luajit" or v == "5.4" and "build" or "build-lua" .. v
  build = root .. "/" .. build
end
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath
return root
