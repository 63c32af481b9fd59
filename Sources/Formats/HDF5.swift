// Thin helpers over the libhdf5 C API: status checks that throw, scalar attributes (int64,
// float64, variable-length UTF-8 strings), and hyperslab row selections.

import CHDF5
import Foundation

package enum H5 {
    /// Turns HDF5's printed error stack off once; failures become thrown errors instead.
    package static let silenced: Void = { h5_silence_errors() }()

    @discardableResult
    package static func check(_ status: herr_t, _ what: @autoclosure () -> String) throws -> herr_t {
        if status < 0 { throw PipelineError.hdf5("HDF5 failed to \(what()).") }
        return status
    }

    package static func id(_ value: hid_t, _ what: @autoclosure () -> String) throws -> hid_t {
        if value < 0 { throw PipelineError.hdf5("HDF5 failed to \(what()).") }
        return value
    }

    /// A variable-length UTF-8 string type (caller closes).
    package static func stringType() throws -> hid_t {
        let t = try id(H5Tcopy(h5_t_c_s1()), "create a string type")
        try check(H5Tset_size(t, h5t_variable()), "set a variable string size")
        try check(H5Tset_cset(t, H5T_CSET_UTF8), "set the UTF-8 character set")
        return t
    }

    package static func attributeExists(_ obj: hid_t, _ name: String) -> Bool { H5Aexists(obj, name) > 0 }

    /// Creates or overwrites a scalar attribute of file type `fileType` from `value` in `memType`.
    private static func writeScalar(_ obj: hid_t, _ name: String, fileType: hid_t, memType: hid_t,
                                    _ value: UnsafeRawPointer) throws {
        let space = try id(H5Screate(H5S_SCALAR), "create a scalar dataspace")
        defer { H5Sclose(space) }
        let attr: hid_t
        if attributeExists(obj, name) {
            attr = try id(H5Aopen(obj, name, h5_p_default()), "open attribute \(name)")
        } else {
            attr = try id(H5Acreate2(obj, name, fileType, space, h5_p_default(), h5_p_default()), "create attribute \(name)")
        }
        defer { H5Aclose(attr) }
        try check(H5Awrite(attr, memType, value), "write attribute \(name)")
    }

    package static func setAttribute(_ obj: hid_t, _ name: String, int value: Int) throws {
        var v = Int64(value)
        try writeScalar(obj, name, fileType: h5_t_std_i64le(), memType: h5_t_native_int64(), &v)
    }

    package static func setAttribute(_ obj: hid_t, _ name: String, double value: Double) throws {
        var v = value
        try writeScalar(obj, name, fileType: h5_t_ieee_f64le(), memType: h5_t_native_double(), &v)
    }

    package static func setAttribute(_ obj: hid_t, _ name: String, string value: String) throws {
        let t = try stringType()
        defer { H5Tclose(t) }
        if attributeExists(obj, name) { try check(H5Adelete(obj, name), "replace attribute \(name)") }
        let c = strdup(value)
        defer { free(c) }
        var p: UnsafePointer<CChar>? = UnsafePointer(c)
        try writeScalar(obj, name, fileType: t, memType: t, &p)
    }

    private static func openAttribute(_ obj: hid_t, _ name: String) throws -> hid_t {
        guard attributeExists(obj, name) else { throw PipelineError.hdf5("The HDF5 attribute \(name) is missing.") }
        return try id(H5Aopen(obj, name, h5_p_default()), "open attribute \(name)")
    }

    package static func intAttribute(_ obj: hid_t, _ name: String) throws -> Int {
        let a = try openAttribute(obj, name)
        defer { H5Aclose(a) }
        var v: Int64 = 0
        try check(H5Aread(a, h5_t_native_int64(), &v), "read attribute \(name) as an integer")
        return Int(v)
    }

    package static func doubleAttribute(_ obj: hid_t, _ name: String) throws -> Double {
        let a = try openAttribute(obj, name)
        defer { H5Aclose(a) }
        var v: Double = 0
        try check(H5Aread(a, h5_t_native_double(), &v), "read attribute \(name) as a float")
        return v
    }

    /// Reads a string attribute stored either variable-length (ours, h5py str) or fixed-length.
    package static func stringAttribute(_ obj: hid_t, _ name: String) throws -> String {
        let a = try openAttribute(obj, name)
        defer { H5Aclose(a) }
        let fileType = try id(H5Aget_type(a), "read the type of attribute \(name)")
        defer { H5Tclose(fileType) }
        guard H5Tget_class(fileType) == H5T_STRING else {
            throw PipelineError.hdf5("The HDF5 attribute \(name) is not a string.")
        }
        if H5Tis_variable_str(fileType) > 0 {
            let t = try stringType()
            defer { H5Tclose(t) }
            var p: UnsafeMutablePointer<CChar>?
            try check(H5Aread(a, t, &p), "read string attribute \(name)")
            defer { if let p { H5free_memory(p) } }
            return p.map { String(cString: $0) } ?? ""
        }
        let size = H5Tget_size(fileType)
        var buffer = [CChar](repeating: 0, count: size + 1)
        let memType = try id(H5Tcopy(fileType), "copy a string type")
        defer { H5Tclose(memType) }
        try check(H5Aread(a, memType, &buffer), "read string attribute \(name)")
        return String(cString: buffer)
    }

    /// Selects whole rows (along dimension 0) of a dataspace of rank `rank`, merging runs.
    /// `rows` must be sorted and unique.
    package static func selectRows(_ space: hid_t, rows: [Int], trailing: [hsize_t]) throws {
        try check(H5Sselect_none(space), "clear a selection")
        var i = 0
        var first = true
        while i < rows.count {
            var j = i
            while j + 1 < rows.count && rows[j + 1] == rows[j] + 1 { j += 1 }
            var start = [hsize_t(rows[i])] + trailing.map { _ in 0 }
            var count = [hsize_t](repeating: 1, count: 1 + trailing.count)
            var block = [hsize_t(j - i + 1)] + trailing
            try check(H5Sselect_hyperslab(space, first ? H5S_SELECT_SET : H5S_SELECT_OR, &start, nil, &count, &block),
                      "select rows \(rows[i])...\(rows[j])")
            first = false
            i = j + 1
        }
    }
}
