-- bench/lib/results.lua -- the figures of the last full benchmark runs on
-- the development machine, one source for bench/RESULTS.md and its plot
-- (`make results` writes both with bench/lib/write_results.lua).
--
-- Each row: what was measured, the script, the figure as text, and for
-- the plot `score`: the measured ratio divided by the target ratio (>= 1:
-- the target is met), nil where a row has no ratio target. `lower`: for
-- targets that are an upper bound (score = target / measured).

return {
  machine = "2 cores, 24 GiB, ext4 on a virtual disk (Debian 12, Linux 6.18); "
            .. "a 4 KiB pwrite + fdatasync at ~9,000-10,000/s",
  rows = {
    {area = "core", what = "durable auto-commit alloc / raw pwrite 4 KiB + fdatasync",
     bench = "commit_rate", figure = "0.96-0.97", target = ">= 0.80", measured = 0.96, goal = 0.80},
    {area = "core", what = "durable single-page protected commit / raw",
     bench = "commit_rate", figure = "0.86-0.87", target = ">= 0.80", measured = 0.86, goal = 0.80},
    {area = "core", what = "barriers per commit (alloc, free, set_root, protected, transactions)",
     bench = "count_barriers.sh", figure = "1", target = "1"},
    {area = "core", what = "mp_alloc inside a transaction, 10M pages vs 1,000",
     bench = "alloc_scale", figure = "1.34x", target = "<= 1.5x", measured = 1.34, goal = 1.5,
     lower = true},
    {area = "core", what = "open of 2^24 pages (warm)",
     bench = "open_time", figure = "12.5 ms", target = "< 50 ms", measured = 12.5, goal = 50,
     lower = true},
    {area = "core", what = "alloc one-page commits vs LMDB one-put commits",
     bench = "peer_lmdb", figure = "2.3x", target = "-"},
    {area = "Lua", what = "view:unpack(0, \"<i8\") / string.unpack",
     bench = "lua_access.lua", figure = "1.36", target = "<= 2", measured = 1.36, goal = 2,
     lower = true},
    {area = "slab", what = "alloc + free inside a transaction, ops/s",
     bench = "slab.lua", figure = "531,000-539,000", target = ">= 500,000", measured = 531000,
     goal = 500000},
    {area = "slab", what = "space efficiency, 100,000 objects of 16..512 bytes, 4 KiB pages",
     bench = "slab.lua", figure = "0.826", target = ">= 0.80", measured = 0.826, goal = 0.80},
    {area = "records", what = "100,000 inserts in one transaction vs SQLite",
     bench = "records.lua", figure = "1.49-1.63x", target = ">= 2x", measured = 1.49, goal = 2},
    {area = "records", what = "get by id vs SQLite select by rowid",
     bench = "records.lua", figure = "5.0-8.0x", target = ">= 3x", measured = 4.96, goal = 3},
    {area = "records", what = "durable single-record update vs SQLite",
     bench = "records.lua", figure = "0.94-1.02x", target = ">= 1.1x", measured = 0.94, goal = 1.1},
    {area = "heap", what = "put of 1 MiB values (64 in one transaction) vs SQLite blob insert",
     bench = "heap.lua", figure = "2.33x", target = ">= 2x", measured = 2.33, goal = 2},
    {area = "heap", what = "get of a whole 1 MiB value vs SQLite blob select",
     bench = "heap.lua", figure = "2.92x", target = ">= 2x", measured = 2.92, goal = 2},
    {area = "btree", what = "put of 100,000 random 16-byte keys in one transaction vs SQLite",
     bench = "btree.lua", figure = "0.93-0.97x", target = ">= 1x", measured = 0.93, goal = 1},
    {area = "btree", what = "get of random keys vs SQLite (indexed table)",
     bench = "btree.lua", figure = "1.77-1.85x", target = ">= 1x", measured = 1.77, goal = 1},
    {area = "btree", what = "scan of every key in order vs SQLite",
     bench = "btree.lua", figure = "4.7-6.1x", target = ">= 1x", measured = 4.69, goal = 1},
    {area = "readers", what = "writer's durable commits with 4 readers (refresh + read, tight loop) / none",
     bench = "readers.lua", figure = "0.44-0.46x", target = ">= 0.9x", measured = 0.44, goal = 0.9},
    {area = "readers", what = "the same with 4 CPU burners (no file) / none: CPU alone, 2 cores",
     bench = "readers.lua", figure = "0.56-0.84x", target = "-"},
    {area = "readers", what = "a reader's barriers; refresh with nothing committed / after a commit",
     bench = "readers.lua", figure = "0; 0.7 / 47 us", target = "0 barriers"},
  },
}
