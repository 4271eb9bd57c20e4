-- certs/generate.lua: makes tlspeer's development certificates with tlspeer
-- itself (no openssl needed):
--
--   ca.key, ca.crt          a dev CA (EC P-256, 10 years)
--   server.key, server.crt  localhost, 127.0.0.1 and ::1, signed by the CA
--   client.key, client.crt  a client-auth certificate for mutual TLS
--
-- Usage: lua5.4 certs/generate.lua [folder] [--force]
-- Existing files are kept unless --force is given.  Private keys are
-- written with mode 0600 and are never committed.

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
dofile(here .. "/../examples/_path.lua")            -- lua/ and the build

local tls = require "tlspeer"

local dir, force = here, false
for _, a in ipairs(arg or {}) do
  if a == "--force" then force = true else dir = a end
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local names = { "ca.key", "ca.crt", "server.key", "server.crt", "client.key", "client.crt" }
local all = true
for _, n in ipairs(names) do all = all and exists(dir .. "/" .. n) end
if all and not force then
  print("certs: " .. dir .. " already has the dev certificates (--force to remake them)")
  return
end

local function stamp(offset_days)
  return os.date("!%Y%m%d%H%M%S", os.time() + math.floor(offset_days * 86400))
end

local function check(ok, msg)
  if not ok then error(msg, 2) end
  return ok
end

local crypto = tls.Crypto.new()

local ca_key = check(crypto:generate_ec("secp256r1"))
local ca = check(crypto:generate_self_signed_certificate(
  ca_key, "CN=tlspeer dev CA,O=tlspeer", stamp(-1), stamp(3650), { ca = true }))

local server_key = check(crypto:generate_ec("secp256r1"))
local server = check(crypto:issue_certificate(
  server_key, "CN=localhost,O=tlspeer", ca_key, ca, stamp(-1), stamp(825),
  { san = { "localhost", "127.0.0.1", "::1" } }))

local client_key = check(crypto:generate_ec("secp256r1"))
local client = check(crypto:issue_certificate(
  client_key, "CN=tlspeer client,O=tlspeer", ca_key, ca, stamp(-1), stamp(825),
  { client = true }))

for name, obj in pairs { ["ca.key"] = ca_key, ["ca.crt"] = ca,
                         ["server.key"] = server_key, ["server.crt"] = server,
                         ["client.key"] = client_key, ["client.crt"] = client } do
  check(obj:save(dir .. "/" .. name))
end

print("certs: wrote " .. table.concat(names, ", ") .. " to " .. dir)
print("  CA:     " .. ca:get_subject() .. " until " .. ca:get_not_after())
print("  server: " .. server:get_subject() .. " for " .. table.concat(server:get_san(), ", "))
print("  client: " .. client:get_subject())
