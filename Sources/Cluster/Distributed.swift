// Many processes working as one: the `Distributed` abstraction (rank, size, sum-allreduce of
// float buffers, broadcast, gather, barrier), a single-process implementation, and one over
// Open MPI (CMPI). Every command runs unchanged without `mpirun`: MPI is initialized only when
// the process was launched by it (Open MPI's launcher sets OMPI_COMM_WORLD_SIZE), so the plain
// binary never pays MPI start-up.
//
// Failures: MPI_COMM_WORLD gets MPI_ERRORS_RETURN, so a failed call (a peer died, a broken
// link) comes back as a `ClusterError` that reads as one sentence instead of aborting in the
// library; `Cluster.fail` prints it and ends the process, which makes mpirun stop the others.

import CMPI
import Foundation

public enum ClusterError: Error, CustomStringConvertible, LocalizedError {
    /// An MPI call returned an error.
    case mpi(call: String, rank: Int, size: Int, message: String)
    /// The ranks disagree about something they must share (weights, a step, a data size).
    case divergence(String)
    /// The job cannot be split this way.
    case invalid(String)

    public var description: String {
        switch self {
        case .mpi(let call, let rank, let size, let message):
            return "\(call) failed on rank \(rank) of \(size) (\(message)); another process of the job has probably died or lost its network link. Rerun the job (training: with --resume) to continue from its last checkpoint."
        case .divergence(let m), .invalid(let m): return m
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

    func check(_ code: Int32, _ call: String) throws {
        guard code == cmpi_success() else {
            throw ClusterError.mpi(call: call, rank: rank, size: size, message: Self.errorString(code))
        }
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let base = buffer.baseAddress else { return }
        for lo in stride(from: 0, to: buffer.count, by: Self.chunk) {
            let n = min(Self.chunk, buffer.count - lo)
            try check(MPI_Allreduce(cmpi_in_place(), base + lo, Int32(n), cmpi_float(), cmpi_sum(), cmpi_comm_world()), "MPI_Allreduce")
        }
    }

    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        guard let base = buffer.baseAddress else { return }
        for lo in stride(from: 0, to: buffer.count, by: Self.chunk) {
            let n = min(Self.chunk, buffer.count - lo)
            try check(MPI_Allreduce(cmpi_in_place(), base + lo, Int32(n), cmpi_double(), cmpi_sum(), cmpi_comm_world()), "MPI_Allreduce")
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard let base = buffer.baseAddress else { return }
        for lo in stride(from: 0, to: buffer.count, by: Self.chunk) {
            let n = min(Self.chunk, buffer.count - lo)
            try check(MPI_Bcast(base + lo, Int32(n), cmpi_byte(), Int32(root), cmpi_comm_world()), "MPI_Bcast")
        }
    }

    public func gather(_ bytes: [UInt8], root: Int) throws -> [[UInt8]] {
        var mine = Int64(bytes.count)
        var counts = [Int64](repeating: 0, count: size)
        try check(MPI_Gather(&mine, 1, cmpi_int64(), &counts, 1, cmpi_int64(), Int32(root), cmpi_comm_world()), "MPI_Gather")
        let total = rank == root ? counts.reduce(0, +) : 0
        guard total < Int64(Int32.max) else {
            throw ClusterError.invalid("A gather of \(total) bytes exceeds MPI's 2 GiB limit of one call.")
        }
        var received = [UInt8](repeating: 0, count: max(Int(total), 1))
        var recvCounts = counts.map { Int32($0) }
        var displacements = [Int32](repeating: 0, count: size)
        for i in 1..<max(size, 1) where i < size { displacements[i] = displacements[i - 1] + recvCounts[i - 1] }
        var send = bytes.isEmpty ? [0] : bytes
        try check(MPI_Gatherv(&send, Int32(bytes.count), cmpi_byte(), &received, &recvCounts, &displacements, cmpi_byte(),
                              Int32(root), cmpi_comm_world()), "MPI_Gatherv")
        guard rank == root else { return [] }
        return (0..<size).map { Array(received[Int(displacements[$0])..<Int(displacements[$0] + recvCounts[$0])]) }
    }

    public func barrier() throws { try check(MPI_Barrier(cmpi_comm_world()), "MPI_Barrier") }

    func finalize() { MPI_Finalize() }
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
            return w
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
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
