// Many processes working as one: the `Distributed` abstraction (rank, size, sum-allreduce of
// float buffers, broadcast, gather, barrier), a single-process implementation, and one over
// Open MPI (CMPI). Every command runs unchanged without `mpirun`: MPI is initialized only when
// the process was launched by it (Open MPI's launcher sets OMPI_COMM_WORLD_SIZE), so the plain
// binary never pays MPI start-up.
//
// Failures: MPI_COMM_WORLD gets MPI_ERRORS_RETURN, so a failed call (a peer died, a broken
// link) comes back as a `ClusterError` that reads as one sentence instead of aborting in the
// library; the CLI prints it (after `Cluster.beforeFailing`) and exits, which makes mpirun stop
// the others.
// A peer that hangs without dying (stuck, deadlocked, stopped, or behind a link that drops
// packets without an error) is caught by a watchdog: a collective call that has not returned
// after GEN_MPI_TIMEOUT seconds (default 600) ends its process with one sentence, and so the job.

import CMPI
import Foundation

public enum ClusterError: Error, CustomStringConvertible, LocalizedError {
    /// An MPI call returned an error.
    case mpi(call: String, rank: Int, size: Int, message: String)
    /// The ranks disagree about something they must share (weights, a step, a data size).
    case divergence(String)
    /// The job cannot be split this way.
    case invalid(String)
    /// A collective call had not returned after the watchdog's limit.
    case timeout(call: String, seconds: Double)

    public var description: String {
        switch self {
        case .mpi(let call, let rank, let size, let message):
            return "\(call) failed on rank \(rank) of \(size) (\(message)); another process of the job has probably died or lost its network link. Rerun the job (training: with --resume) to continue from its last checkpoint."
        case .divergence(let m), .invalid(let m): return m
        case .timeout(let call, let seconds):
            return "\(call) has waited \(Watchdog.format(seconds)) s for the other ranks (the limit GEN_MPI_TIMEOUT); another process of the job hangs (stuck, deadlocked or stopped) or its network link is down. Rerun the job (training: with --resume) to continue from its last checkpoint."
        }
    }

    public var errorDescription: String? { description }
}

/// The processes of one job. Collective calls must be made by every rank in the same order.
public protocol Distributed: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Elementwise sum over the ranks, in place; every rank receives the same result.
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws
    /// Rank `root`'s bytes into every rank's buffer (same length everywhere).
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    /// Every rank's bytes (any length) at `root`, in rank order; the other ranks get [].
    func gather(_ bytes: [UInt8], root: Int) throws -> [[UInt8]]
    func barrier() throws
}

extension Distributed {
    public var isRoot: Bool { rank == 0 }

    public func allreduceSum(_ values: inout [Float]) throws {
        try values.withUnsafeMutableBufferPointer { try allreduceSum($0) }
    }

    public func allreduceSum(_ values: inout [Double]) throws {
        try values.withUnsafeMutableBufferPointer { try allreduceSum($0) }
    }

    public func broadcast(_ values: inout [Float], root: Int = 0) throws {
        try values.withUnsafeMutableBytes { try broadcast($0, root: root) }
    }

    /// Rank `root`'s bytes of any length on every rank.
    public func broadcast(bytes: [UInt8], root: Int = 0) throws -> [UInt8] {
        guard size > 1 else { return bytes }
        var n = [Double(bytes.count)]
        try n.withUnsafeMutableBytes { try broadcast($0, root: root) }
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(n[0]))
        try out.withUnsafeMutableBytes { try broadcast($0, root: root) }
        return out
    }

    /// The ranks' values of `x` at every rank, in rank order (an allgather of a few numbers).
    public func allgather(_ x: Double) throws -> [Double] {
        var all = [Double](repeating: 0, count: size)
        all[rank] = x
        try allreduceSum(&all)
        return all
    }

    /// The rows `0..<count` that this rank handles when they are dealt out round-robin
    /// (row i to rank i mod size).
    public func roundRobin(_ count: Int) -> StrideTo<Int> { stride(from: rank, to: count, by: size) }

    /// This rank's contiguous slice of `count` items (the first `count % size` ranks get one more).
    public func slice(of count: Int) -> Range<Int> {
        let base = count / size, extra = count % size
        let lo = rank * base + min(rank, extra)
        return lo..<(lo + base + (rank < extra ? 1 : 0))
    }
}

/// One process: every collective is the identity.
public final class SingleProcess: Distributed {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    public func gather(_ bytes: [UInt8], root: Int) throws -> [[UInt8]] { [bytes] }
    public func barrier() throws {}
}

/// MPI_COMM_WORLD of Open MPI.
public final class MPIWorld: Distributed {
    public let rank: Int
    public let size: Int
    /// Ends the process when a collective call outlives its limit (nil: no limit).
    var watchdog: Watchdog?
    /// Test hook (GEN_MPI_TEST_HANG=rank:n[:seconds]): this rank hangs before its n-th
    /// collective call, for ever or (a slow rank) for that many seconds.
    var hangBefore: Int?
    var hangSeconds: Int?
    var calls = 0
    /// Largest element count of one MPI call (counts are 32-bit).
    static let chunk = 1 << 28

    /// MPI_Init (funneled: only the main thread calls MPI) and the error handler that returns.
    public init() throws {
        var provided: Int32 = 0
        var code = MPI_Init_thread(nil, nil, cmpi_thread_funneled(), &provided)
        guard code == cmpi_success() else {
            throw ClusterError.mpi(call: "MPI_Init_thread", rank: 0, size: 0, message: Self.errorString(code))
        }
        code = MPI_Comm_set_errhandler(cmpi_comm_world(), cmpi_errors_return())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(cmpi_comm_world(), &r)
        MPI_Comm_size(cmpi_comm_world(), &s)
        rank = Int(r)
        size = Int(s)
        guard code == cmpi_success() else {
            throw ClusterError.mpi(call: "MPI_Comm_set_errhandler", rank: rank, size: size, message: Self.errorString(code))
        }
        if size > 1 { Self.explainTermination(rank: rank, size: size) }
    }

    /// When a process of the job dies, mpirun ends the others with SIGTERM (before SIGKILL):
    /// rank 0 says so in one sentence instead of vanishing (the other ranks end quietly, since a
    /// failure of rank 0 has printed its own sentence). The text is prepared here, because a
    /// signal handler may only write(2) and _exit(2).
    static func explainTermination(rank: Int, size: Int) {
        let text = rank != 0 ? "" : "error: rank 0 of \(size): the job was stopped by mpirun (another of its processes failed or was killed, or the job was interrupted; mpirun names the process); rerun the same command (training: with --resume) to continue from the last checkpoint.\n"
        let bytes = Array(text.utf8)
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes.count)
        buffer.initialize(from: bytes, count: bytes.count)
        terminationMessage = (buffer, bytes.count)
        signal(SIGTERM) { _ in
            if let (p, n) = MPIWorld.terminationMessage, n > 0 { _ = write(2, p, n) }
            _exit(1)
        }
    }

    nonisolated(unsafe) static var terminationMessage: (UnsafeMutablePointer<UInt8>, Int)?

    static func errorString(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
        var length: Int32 = 0
        guard MPI_Error_string(code, &buffer, &length) == cmpi_success() else { return "MPI error \(code)" }
        return String(cString: buffer)
    }

    /// Reads GEN_MPI_TIMEOUT (seconds; 0 switches the watchdog off) and the test hook
    /// GEN_MPI_TEST_HANG, and starts the watchdog.
    func configure(environment env: [String: String]) throws {
        let timeout = try Watchdog.limit(env["GEN_MPI_TIMEOUT"])
        if timeout > 0 { watchdog = Watchdog(seconds: timeout, rank: rank, size: size) }
        if let hook = env["GEN_MPI_TEST_HANG"] {
            let fields = hook.split(separator: ":", omittingEmptySubsequences: false)
            let parts = fields.compactMap { Int($0) }
            guard parts.count == fields.count, parts.count == 2 || parts.count == 3, parts[1] >= 1, parts.dropFirst(2).allSatisfy({ $0 >= 0 }) else {
                throw ClusterError.invalid("GEN_MPI_TEST_HANG must be rank:n or rank:n:seconds (that rank hangs before its n-th collective call, for ever or for the seconds); got '\(hook)'.")
            }
            if parts[0] == rank { (hangBefore, hangSeconds) = (parts[1], parts.count == 3 ? parts[2] : nil) }
        }
    }

    /// One collective call under the watchdog.
    func collective(_ call: String, _ body: () -> Int32) throws {
        calls += 1
        if let hangBefore, calls == hangBefore {   // the test hook: a live process that does not answer
            guard let hangSeconds else { while true { sleep(60) } }
            let note = "test hook: rank \(rank) pauses \(hangSeconds) s before collective call \(calls)\n"
            _ = note.withCString { write(2, $0, strlen($0)) }
            sleep(UInt32(hangSeconds))
        }
        let code = watchdog.map { $0.guarding(call, body) } ?? body()
        try check(code, call)
    }

    func check(_ code: Int32, _ call: String) throws {
        guard code == cmpi_success() else {
            throw ClusterError.mpi(call: call, rank: rank, size: size, message: Self.errorString(code))
        }
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let base = buffer.baseAddress else { return }
        for lo in stride(from: 0, to: buffer.count, by: Self.chunk) {
            let n = min(Self.chunk, buffer.count - lo)
            try collective("MPI_Allreduce") { MPI_Allreduce(cmpi_in_place(), base + lo, Int32(n), cmpi_float(), cmpi_sum(), cmpi_comm_world()) }
        }
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        guard let base = buffer.baseAddress else { return }
        for lo in stride(from: 0, to: buffer.count, by: Self.chunk) {
            let n = min(Self.chunk, buffer.count - lo)
            try collective("MPI_Allreduce") { MPI_Allreduce(cmpi_in_place(), base + lo, Int32(n), cmpi_double(), cmpi_sum(), cmpi_comm_world()) }
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard let base = buffer.baseAddress else { return }
        for lo in stride(from: 0, to: buffer.count, by: Self.chunk) {
            let n = min(Self.chunk, buffer.count - lo)
            try collective("MPI_Bcast") { MPI_Bcast(base + lo, Int32(n), cmpi_byte(), Int32(root), cmpi_comm_world()) }
        }
    }

    public func gather(_ bytes: [UInt8], root: Int) throws -> [[UInt8]] {
        var mine = Int64(bytes.count)
        var counts = [Int64](repeating: 0, count: size)
        try collective("MPI_Gather") { MPI_Gather(&mine, 1, cmpi_int64(), &counts, 1, cmpi_int64(), Int32(root), cmpi_comm_world()) }
        let total = rank == root ? counts.reduce(0, +) : 0
        guard total < Int64(Int32.max) else {
            throw ClusterError.invalid("A gather of \(total) bytes exceeds MPI's 2 GiB limit of one call.")
        }
        var received = [UInt8](repeating: 0, count: max(Int(total), 1))
        var recvCounts = counts.map { Int32($0) }
        var displacements = [Int32](repeating: 0, count: size)
        for i in 1..<max(size, 1) where i < size { displacements[i] = displacements[i - 1] + recvCounts[i - 1] }
        var send = bytes.isEmpty ? [0] : bytes
        try collective("MPI_Gatherv") {
            MPI_Gatherv(&send, Int32(bytes.count), cmpi_byte(), &received, &recvCounts, &displacements, cmpi_byte(), Int32(root), cmpi_comm_world())
        }
        guard rank == root else { return [] }
        return (0..<size).map { Array(received[Int(displacements[$0])..<Int(displacements[$0] + recvCounts[$0])]) }
    }

    public func barrier() throws { try collective("MPI_Barrier") { MPI_Barrier(cmpi_comm_world()) } }

    /// MPI_Finalize waits for every rank too, so it runs under the watchdog as well.
    func finalize() { _ = watchdog.map { $0.guarding("MPI_Finalize") { MPI_Finalize() } } ?? MPI_Finalize() }
}

/// The job this process belongs to.
public enum Cluster {
    /// True when an MPI launcher started this process (Open MPI's mpirun / orterun, or a PMIx
    /// launcher such as srun --mpi=pmix).
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil
    }

    /// The world: MPI under mpirun, else one process. Initialized on first use; a failed MPI
    /// start-up ends the process with one sentence.
    public static let world: Distributed = {
        guard launchedByMPI else { return SingleProcess() }
        do {
            let w = try MPIWorld()
            mpi = w
            try w.configure(environment: ProcessInfo.processInfo.environment)
            return w
        } catch {
            beforeFailing()
            FileHandle.standardError.write(Data("error: \(rankPrefix)\(error)\n".utf8))
            exit(1)
        }
    }()

    nonisolated(unsafe) private static var mpi: MPIWorld?

    /// MPI_Finalize if MPI was started (call once, at the end of a successful run).
    public static func finalize() {
        mpi?.finalize()
        mpi = nil
    }

    /// "rank r of n: " under MPI with several ranks, else "".
    public static var rankPrefix: String {
        guard let mpi, mpi.size > 1 else { return "" }
        return "rank \(mpi.rank) of \(mpi.size): "
    }

    /// Ends a failed process of a multi-rank job: a rank other than 0 waits a moment first, so
    /// that an error every rank meets is printed once (by rank 0, whose exit makes mpirun stop
    /// the others) and an error of one rank alone is still printed by it. Without MPI (or with
    /// one rank) it returns at once. The wait is 3 s: Open MPI 4.1's mpirun sends its SIGTERM
    /// about 1 s after the failed process exits (measured here: 1.0 s, its
    /// odls_base_sigkill_timeout), so a wait of 1 s let rank 1 print the same sentence again.
    public static func beforeFailing() {
        guard let mpi, mpi.size > 1, mpi.rank != 0 else { return }
        Thread.sleep(forTimeInterval: 3.0)
    }
}

// MARK: - Watchdog

/// Ends the process when one collective call has not returned after `seconds`: a hung peer then
/// ends the job (mpirun stops the others when this process exits) instead of hanging it
/// forever. The main thread marks the start and end of each call (a lock and a signal, nothing
/// against an MPI call); one thread sleeps until the current call's deadline. The thread never
/// calls MPI (the library is initialized for the main thread only). A rank other than 0 waits
/// 3 s before it prints (as `Cluster.beforeFailing`), so when every rank times out at once (a
/// hang in a third rank) the job's message is rank 0's alone.
final class Watchdog {
    let seconds: Double
    let rank: Int
    let size: Int
    private let condition = NSCondition()
    /// The call in progress and when it started (nil between calls).
    private var current: (call: String, started: Double)?

    /// The default limit: long enough for any wait of a healthy job (rank 0 writing a big
    /// checkpoint while the others wait in the next collective, a slow rank's step), short
    /// enough that a hung job ends within minutes.
    static let defaultSeconds: Double = 600

    /// The limit from GEN_MPI_TIMEOUT (nil: the default; 0: no limit).
    static func limit(_ text: String?) throws -> Double {
        guard let text else { return defaultSeconds }
        guard let v = Double(text.trimmingCharacters(in: .whitespaces)), v.isFinite, v >= 0 else {
            throw ClusterError.invalid("GEN_MPI_TIMEOUT must be the seconds a collective MPI call may wait for the other ranks (0: no limit; default \(format(defaultSeconds))); got '\(text)'.")
        }
        return v
    }

    static func format(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? String(Int(seconds)) : String(format: "%.1f", seconds)
    }

    init(seconds: Double, rank: Int, size: Int) {
        (self.seconds, self.rank, self.size) = (seconds, rank, size)
        let thread = Thread { [unowned self] in self.watch() }
        thread.name = "MPI watchdog"
        thread.start()
    }

    static func clock() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    /// Runs `body` (one MPI call) under the limit.
    func guarding<T>(_ call: String, _ body: () -> T) -> T {
        condition.lock()
        current = (call, Self.clock())
        condition.signal()
        condition.unlock()
        defer {
            condition.lock()
            current = nil
            condition.unlock()
        }
        return body()
    }

    /// The watchdog looks at the clock at least this often during a call.
    static let tick: Double = 1

    private func watch() {
        condition.lock()
        var lastLook = Self.clock()
        while true {
            let now = Self.clock()
            // SIGSTOP / Ctrl-Z stops every thread of the process: a look that comes much later
            // than asked means the process was suspended, and that time does not count against
            // the call (a job suspended and continued by its user goes on; a peer that stays
            // stopped while this process runs is still caught).
            if now - lastLook > Self.tick + 4, var c = current {
                c.started += now - lastLook - Self.tick
                current = c
            }
            lastLook = now
            guard let c = current else {
                condition.wait()
                lastLook = Self.clock()
                continue
            }
            let left = c.started + seconds - now
            if left > 0 {
                _ = condition.wait(until: Date(timeIntervalSinceNow: min(left, Self.tick)))
                continue
            }
            condition.unlock()
            fire(ClusterError.timeout(call: c.call, seconds: seconds))
        }
    }

    private func fire(_ error: ClusterError) -> Never {
        if rank != 0 && size > 1 { Thread.sleep(forTimeInterval: 3.0) }
        let text = "error: " + (size > 1 ? "rank \(rank) of \(size): " : "") + error.description + "\n"
        _ = text.withCString { write(2, $0, strlen($0)) }
        _exit(1)
    }
}

// MARK: - Messages

/// Packs numbers and arrays into the bytes of a gather or broadcast.
public struct MessageWriter {
    public private(set) var bytes: [UInt8] = []
    public init() {}
    public mutating func int(_ v: Int) { withUnsafeBytes(of: Int64(v).littleEndian) { bytes += $0 } }
    public mutating func uint64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func floats(_ p: UnsafeBufferPointer<Float>) { int(p.count); bytes += UnsafeRawBufferPointer(p) }
    public mutating func floats(_ a: [Float]) { a.withUnsafeBufferPointer { floats($0) } }
    public mutating func data(_ a: [UInt8]) { int(a.count); bytes += a }
}

/// Reads what a `MessageWriter` wrote, in the same order.
public struct MessageReader {
    let bytes: [UInt8]
    var at = 0
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var atEnd: Bool { at >= bytes.count }

    mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, at + n <= bytes.count else { throw ClusterError.invalid("A message between the ranks is truncated.") }
        defer { at += n }
        return bytes[at..<(at + n)]
    }
    public mutating func uint64() throws -> UInt64 {
        UInt64(littleEndian: try take(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    }
    public mutating func int() throws -> Int { Int(Int64(bitPattern: try uint64())) }
    public mutating func floats() throws -> [Float] {
        let n = try int()
        let raw = try take(n * 4)
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBytes { $0.copyBytes(from: raw) }
        return out
    }
    public mutating func data() throws -> [UInt8] { Array(try take(try int())) }
}
