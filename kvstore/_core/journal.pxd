# Durability (issue 11): the append-only log and the snapshots of one Core.
# Textually included into _engine.pxd; the code is in journal.pyx.
#
# Files in the data directory (multi-part, like Redis 7's appenddirname):
#   MANIFEST            names the base snapshot (or none) and the logs after it, in order
#   snapshot.<N>.kvs    a full image: STORE records and an END record with the count
#   log.<N>.kvl         records, appended
#   LOCK                held with flock by the one process that owns the directory
# Every file starts with FILE_MAGIC, a u32 format version and a u32 file kind;
# every record is u32 body length + u32 CRC32C of the body + the body (all
# big-endian, like the wire), body = u8 record kind + fields (journal.pyx, "records").

from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

cdef enum:
    JOURNAL_FORMAT = 1            # bump on any incompatible change; newer ones are refused
    FILE_HEADER_BYTES = 16        # magic 8 + version u32 + kind u32
    RECORD_HEADER_BYTES = 8       # body length u32 + crc32c u32
    FILE_KIND_LOG = 1
    FILE_KIND_SNAPSHOT = 2

    # Record kinds (the body's first byte).
    REC_STORE = 1      # u16 key length, key, u32 value length, value, i64 wall deadline ms (0: none)
    REC_REMOVE = 2     # u16 key length, key
    REC_EXPIRE = 3     # u16 key length, key, i64 wall deadline ms
    REC_PERSIST = 4    # u16 key length, key
    REC_INCR = 5       # u16 key length, key, u32 value length, value (the RESULT; ttl kept)
    REC_FLUSH = 6      # u16 prefix length, prefix (empty: everything)
    REC_BATCH = 8      # sub-bodies (each as above, without headers) to the end of the body
    REC_SNAPSHOT_END = 10  # u64 entries: the last record of a snapshot file

    FSYNC_NO = 0
    FSYNC_EVERYSEC = 1
    FSYNC_ALWAYS = 2

    # Snapshot step: keys serialized per scan call, and the write size that
    # makes the step hand its buffer to the file.
    SNAPSHOT_SCAN_KEYS = 256
    SNAPSHOT_WRITE_BYTES = 1 << 20


cdef uint32_t kv_crc32c(uint32_t crc, const char* data, size_t length) noexcept nogil


cdef class Journal:
    cdef Core core
    cdef readonly object files         # the file layer (OsFiles, or a test's fault-injecting one)
    cdef readonly str path
    cdef readonly int policy           # FSYNC_*
    cdef public bint group_commit      # a server syncs per event-loop pass: end() only writes
    cdef object log_fd                 # the current log's descriptor
    cdef object dir_fd
    cdef object lock_fd
    cdef object fd_lock                # threading.Lock: fd swaps vs a sync in another thread
    cdef WriteBuffer pending           # records not written to the log yet
    cdef Py_ssize_t batch_at           # offset of the open batch's header in pending, or -1
    cdef Py_ssize_t batch_body_at      # where the batch's sub-bodies start
    cdef bint out_of_memory            # the hook could not buffer a record
    cdef int64_t wall_offset_ms        # wall-clock ms minus the Core's clock ms
    cdef readonly object failure       # None, or why the log cannot be written (writes refused)
    cdef readonly bint closed
    # files
    cdef uint64_t next_seq             # number for the next log / snapshot file
    cdef object snapshot_name          # the manifest's snapshot (str or None)
    cdef list log_names                # the manifest's logs, oldest first
    # figures
    cdef readonly uint64_t log_bytes           # bytes of the current log
    cdef readonly uint64_t log_bytes_at_base   # its size right after the last snapshot
    cdef readonly uint64_t unsynced_bytes      # written but not fdatasync'd
    cdef readonly uint64_t records_replayed
    cdef readonly uint64_t torn_bytes_discarded
    cdef readonly uint64_t syncs
    cdef readonly object last_snapshot         # dict of the last snapshot's figures, or None
    # the snapshot under way
    cdef readonly bint snapshotting
    cdef uint64_t snap_cursor
    cdef bint snap_started_scan
    cdef uint64_t snap_entries
    cdef uint64_t snap_bytes
    cdef object snap_fd
    cdef object snap_tmp
    cdef object snap_final
    cdef double snap_started
    cdef WriteBuffer snap_buf
    cdef object snap_thread             # the finishing thread (fsync, rename, manifest)
    cdef object snap_result             # what the finishing thread ended with
    # auto triggers
    cdef public object snapshot_every   # seconds, or None
    cdef public object snapshot_log_growth  # percent, or None
    cdef double last_snapshot_at        # time.monotonic() of the last completed snapshot (or open)
    cdef object sync_thread
    cdef object sync_stop
    cdef object __weakref__

    cdef int buffer_record(self, MutationKind kind, const char* key, Py_ssize_t key_length,
                           const char* value, Py_ssize_t value_length,
                           int64_t deadline_ms) except -1
    cdef int after_call(self) except -1
    cdef Py_ssize_t replay(self, bytes data, object name, bint last) except -1
    cdef int apply(self, const char* body, Py_ssize_t length) except -1
    cdef Py_ssize_t _apply_one(self, const char* body, Py_ssize_t length) except -1
    cdef int snapshot_step(self, int64_t budget_us) except -1
    cdef int tick(self, int64_t budget_us) except -1
