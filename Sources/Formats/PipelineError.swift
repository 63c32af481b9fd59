// Errors of the data and file-format layer. Each case reads as one clear sentence.

import Foundation
import Tensor

public enum PipelineError: Error, CustomStringConvertible, Equatable {
    /// A file or folder that should exist does not.
    case missingFile(String)
    /// A file exists but its content is not what the format requires.
    case corruptFile(path: String, reason: String)
    /// An image could not be decoded.
    case imageDecode(String)
    /// A file could not be written.
    case writeFailed(path: String, reason: String)
    /// A dataset folder is unusable (no classes, an empty class, ...).
    case dataset(String)
    /// An HDF5 call failed.
    case hdf5(String)
    /// A latent cache does not match what the caller expects.
    case cacheMismatch(String)
    /// The caller passed something inconsistent.
    case invalidArgument(String)

    /// One line: control characters read from files (names, paths) are escaped.
    public var description: String { text.oneLine(limit: 1000) }

    private var text: String {
        switch self {
        case .missingFile(let p): return "The file or folder \(p) does not exist."
        case .corruptFile(let p, let r): return "The file \(p) is not usable: \(r)."
        case .imageDecode(let m): return m
        case .writeFailed(let p, let r): return "Could not write \(p): \(r)."
        case .dataset(let m): return m
        case .hdf5(let m): return m
        case .cacheMismatch(let m): return m
        case .invalidArgument(let m): return m
        }
    }
}

extension PipelineError: LocalizedError {
    public var errorDescription: String? { description }
}

/// Prints a one-line warning to standard error.
package func warn(_ message: String) {
    FileHandle.standardError.write(Data(("warning: " + message + "\n").utf8))
}

/// An error as one phrase (NSError dumps reduced to their description).
public func oneSentence(_ error: Error) -> String {
    if error is CocoaError || type(of: error) == NSError.self { return (error as NSError).localizedDescription }
    if let e = error as? LocalizedError, let d = e.errorDescription { return d }
    return "\(error)"
}
