-- written by bench/lib/collect_durable.lua (make bench): the last run's durable commits
return {
  machine = "2 CPUs, ext4 file system, kernel 6.18.44-fc-v1272",
  notes = {},
  rounds = 6,
  rows = {
    {
      barriers = "1.00",
      rate = 10013,
      ratio = 1.0,
      source = "commit_rate",
      system = "raw",
      variant = "raw pwrite+fdatasync"
    },
    {
      barriers = "1.00",
      rate = 9283,
      ratio = 0.92,
      source = "commit_rate",
      system = "mappedpages",
      variant = "auto-commit alloc"
    },
    {
      barriers = "1.00",
      rate = 9863,
      ratio = 0.95,
      source = "commit_rate",
      system = "mappedpages",
      variant = "auto-commit free"
    },
    {
      barriers = "1.00",
      rate = 10873,
      ratio = 1.13,
      source = "commit_rate",
      system = "mappedpages",
      variant = "auto-commit set_root"
    },
    {
      barriers = "1.00",
      rate = 10564,
      ratio = 1.02,
      source = "commit_rate",
      system = "mappedpages",
      variant = "txn: begin+10 alloc+commit"
    },
    {
      barriers = "1.00",
      rate = 8949,
      ratio = 0.91,
      source = "commit_rate",
      system = "mappedpages",
      variant = "protected commit (1 page write)"
    },
    {
      barriers = "1.00",
      rate = 9681,
      ratio = 1.0,
      source = "commit_rate",
      system = "mappedpages",
      variant = "auto-commit alloc_protected"
    },
    {
      barriers = "1.00",
      rate = 1503,
      ratio = 0.15,
      source = "commit_rate",
      system = "mappedpages",
      variant = "txn: 100 protected page writes"
    },
    {
      barriers = "-",
      rate = 11226,
      ratio = 1.0,
      source = "peer_sqlite",
      system = "raw",
      variant = "raw pwrite 4 KiB + fdatasync"
    },
    {
      barriers = "1.00",
      rate = 9145,
      ratio = 0.81,
      source = "peer_sqlite",
      system = "SQLite",
      variant = "SQLite WAL, synchronous=FULL, 1-row INSERT"
    },
    {
      barriers = "1.00",
      rate = 11619,
      ratio = 1.02,
      source = "peer_sqlite",
      system = "mappedpages",
      variant = "mappedpages auto-commit alloc"
    },
    {
      barriers = "-",
      rate = 11044,
      ratio = 1.0,
      source = "peer_lmdb",
      system = "raw",
      variant = "raw pwrite 4 KiB + fdatasync"
    },
    {
      barriers = "2.00",
      rate = 4371,
      ratio = 0.41,
      source = "peer_lmdb",
      system = "LMDB",
      variant = "LMDB, 1 put per txn, default sync"
    },
    {
      barriers = "1.00",
      rate = 10255,
      ratio = 0.92,
      source = "peer_lmdb",
      system = "mappedpages",
      variant = "mappedpages auto-commit alloc"
    }
  },
  seconds = 0.5
}
