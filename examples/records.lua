-- examples/records.lua -- a game's players table with mappedpages.records:
-- create it, insert, query, update in a transaction, reopen, index.
-- Run from the repository root after `make`:  lua5.4 examples/records.lua

if arg and arg[0] and debug.getinfo(1, "S").source == "@" .. arg[0] then
  package.path = "lua/?.lua;lua/?/init.lua;" .. package.path   -- the in-tree modules
  package.cpath = "build/?.so;" .. package.cpath
end
local mp = require "mappedpages"

-- The schema: fixed-size fields, defaults for the ones you leave out.
local SCHEMA = [[
  record player {
    name:  char[16]
    class: enum { warrior, mage, rogue } = warrior
    level: u16 = 1
    gold:  i64
    alive: bool = true
  }
]]

local path = os.tmpname()
os.remove(path)                         -- mp.create wants a new file
local pager = assert(mp.create(path))
local players = assert(mp.records.open(pager, "players", SCHEMA))   -- created now

-- Inserts: each call is one durable transaction of its own...
local ada = assert(players:insert{name = "ada", class = "mage", gold = 120})
-- ...or many of them in one transaction, all or nothing.
pager:transaction(function()
  for i = 1, 5 do players:insert{name = "npc" .. i, gold = 10 * i} end
end)
print(players)                          -- one line: records, pages, ...

-- Queries: by id, one field, or every record in id order.
print(players:get(ada).name, players:get(ada).class, players:field(ada, "gold"))
for id, p in players:scan() do
  if p.gold >= 30 then print("rich:", id, p.name, p.gold) end
end

-- An update in a transaction: ada pays the npcs; an error rolls it all back.
local ok, err = pcall(pager.transaction, pager, function()
  for id, p in players:scan() do
    if id ~= ada then
      players:update(id, {gold = p.gold + 10})
      players:set(ada, "gold", players:field(ada, "gold") - 10)
    end
  end
  if players:field(ada, "gold") < 100 then error("ada is too poor", 0) end
end)
print("transaction:", ok, err, "ada's gold:", players:field(ada, "gold"))   -- rolled back: 120

-- Bad values raise, naming the field: nothing is written.
print(pcall(players.insert, players, {name = "x", level = 70000}))

-- Reopen: same ids, same rows; appending a field migrates every row.
pager:close()
pager = assert(mp.open(path))
local v2 = SCHEMA:gsub("alive: bool = true", "alive: bool = true\n    xp: u32 = 50")
players = assert(mp.records.open(pager, "players", v2))
print("after reopen:", players:get(ada).name, players:field(ada, "xp"), players:count())
players:delete(ada)
print("deleted:", players:get(ada), players:count(), players:check())

-- Indexes: a unique one finds a record by name, a plain one walks gold in
-- order; both change with the rows, in the same transactions.
players = assert(mp.records.open(pager, "players", v2, {unique = {"name"}, index = {"gold"}}))
print("npc3 is id", players:find("name", "npc3"))
for id, p in players:range("gold", 30, 50) do print("30 <= gold < 50:", id, p.name, p.gold) end
print(players:insert{name = "npc3"})     -- nil, msg, "duplicate": names are unique
pager:close()
os.remove(path)
