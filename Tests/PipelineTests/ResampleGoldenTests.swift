import Foundation
@testable import Datasets
@testable import Formats
@testable import Pipeline
import XCTest

/// Expected values produced once with Pillow 13.0 (Image.resize and guided-diffusion's
/// center_crop_arr) on the same synthetic 23x17 image; the test itself needs no Python.
final class ResampleGoldenTests: XCTestCase {
    func syntheticImage() -> RGBImage {
        var px: [UInt8] = []
        for y in 0..<17 { for x in 0..<23 { for c in 0..<3 { px.append(UInt8((x * 37 + y * 91 + c * 53 + (x * y) % 7 * 29) % 256)) } } }
        return RGBImage(width: 23, height: 17, pixels: px)
    }

    func testBicubicDownscaleMatchesPIL() {
        let expected: [UInt8] = [94, 122, 116, 129, 137, 149, 144, 135, 97, 103, 113, 129, 145, 156, 113, 130, 128, 101, 114, 121, 139, 158, 137, 102, 114, 126, 105, 103, 128, 149, 112, 104, 134, 143, 117, 106, 100, 125, 154, 125, 103, 127, 134, 113, 122, 103, 120, 157, 143, 88, 119, 120, 124, 117, 157, 136, 116, 106, 86, 109, 92, 102, 142, 137, 137, 113, 78, 77, 121, 117, 106, 141, 128, 91, 108, 78, 82, 135, 137, 117, 140, 117, 120, 172, 148, 122, 113, 123, 120, 137, 129, 125, 165, 149, 125, 111, 124, 125, 139, 142, 125, 131, 143, 128, 124, 123, 128, 103, 151, 111, 143, 151, 143, 174, 134, 150, 141, 156, 108, 152, 150, 164, 180, 113, 136, 134, 137, 117, 168, 147, 174, 147, 108, 128, 128, 118, 125, 107, 118, 132, 158, 161, 141, 83, 115, 113, 126, 136, 153, 149, 132, 133, 83, 111, 116, 151, 151, 162, 117, 116, 131, 93]
        XCTAssertEqual(syntheticImage().resized(width: 9, height: 6, filter: .bicubic).pixels, expected)
    }

    func testBicubicUpscaleMatchesPIL() {
        let expected: [UInt8] = [0, 48, 101, 16, 69, 128, 45, 101, 161, 73, 135, 188, 107, 161, 214, 134, 187, 255, 161, 223, 194, 189, 232, 31, 231, 49, 61, 97, 23, 90, 0, 63, 119, 37, 90, 152, 64, 124, 179, 95, 153, 223, 127, 179, 175, 153, 206, 0, 179, 251, 21, 221, 136, 57, 187, 12, 82, 6, 55, 108, 21, 81, 141, 55, 112, 171, 83, 144, 201, 117, 171, 231, 144, 197, 60, 171, 237, 0, 201, 221, 48, 235, 37, 74, 76, 36, 99, 4, 75, 132, 44, 97, 159]
        XCTAssertEqual(Array(syntheticImage().resized(width: 31, height: 20, filter: .bicubic).pixels.prefix(93)), expected)
    }

    func testBoxOddSizeMatchesPIL() {
        let expected: [UInt8] = [72, 125, 114, 111, 100, 153, 150, 203, 128, 138, 63, 116, 126, 115, 104, 127, 180, 105, 141, 66, 119, 129, 118, 107, 104, 157, 146, 207, 132, 57, 81, 134, 123, 91, 144, 133, 131, 120, 109, 147, 136, 125, 86, 139, 128, 75, 128, 181, 167, 135, 102, 89, 142, 131, 78, 131, 184, 145, 134, 123, 148, 73, 126, 100, 153, 78]
        XCTAssertEqual(Array(syntheticImage().resized(width: 11, height: 8, filter: .box).pixels.prefix(66)), expected)
    }

    func testCenterCropMatchesGuidedDiffusion() {
        let expected: [UInt8] = [140, 148, 129, 112, 109, 128, 132, 143, 113, 111, 113, 133, 141, 135, 122, 129, 95, 119, 121, 133, 131, 126, 102, 129, 120, 115, 141, 118, 104, 138, 116, 106, 126, 127, 125, 142, 114, 113, 133, 133, 115, 126, 121, 109, 116, 145, 149, 156, 143, 116, 145, 148, 137, 157, 119, 117, 143, 153, 144, 150, 143, 162, 143, 136, 127, 109, 129, 150, 136, 122, 126, 121, 134, 142, 149]
        XCTAssertEqual(ADMPreprocess.centerCrop(syntheticImage(), size: 5).pixels, expected)
    }
}
