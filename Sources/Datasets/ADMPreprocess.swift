// ADM / guided-diffusion `center_crop_arr` preprocessing for ImageNet-style images, and the
// conversion of 8-bit images to the tokenizer's input (3, S, S) floats in [-1, 1].

import Formats
import Foundation
import Tensor

public enum ADMPreprocess {
    /// Description recorded in cache attributes.
    public static func name(size: Int) -> String { "adm-center-crop-\(size)" }

    /// guided-diffusion's center_crop_arr: while the short side >= 2 * size, resize to half
    /// (floor) with a box filter; bicubic-resize so the short side is `size` (Python rounding of
    /// the other side); center crop size x size.
    public static func centerCrop(_ image: RGBImage, size: Int) -> RGBImage {
        precondition(size > 0)
        var img = image
        while min(img.width, img.height) >= 2 * size {
            img = img.resized(width: img.width / 2, height: img.height / 2, filter: .box)
        }
        let scale = Double(size) / Double(min(img.width, img.height))
        let newW = Int((Double(img.width) * scale).rounded(.toNearestOrEven))
        let newH = Int((Double(img.height) * scale).rounded(.toNearestOrEven))
        img = img.resized(width: newW, height: newH, filter: .bicubic)
        let cropY = (img.height - size) / 2
        let cropX = (img.width - size) / 2
        return img.cropped(x: cropX, y: cropY, width: size, height: size)
    }

    /// (3, H, W) floats x / 127.5 - 1, optionally mirrored left-right.
    public static func toTensor(_ image: RGBImage, flip: Bool = false) -> Tensor {
        let rgb = image.rgb()
        let w = rgb.width, h = rgb.height
        let t = Tensor(uninitialized: [3, h, w])
        let p = t.pointer
        rgb.pixels.withUnsafeBufferPointer { src in
            for y in 0..<h {
                for x in 0..<w {
                    let sx = flip ? w - 1 - x : x
                    let s = (y * w + sx) * 3
                    for c in 0..<3 { p[(c * h + y) * w + x] = Float(src[s + c]) / 127.5 - 1 }
                }
            }
        }
        return t
    }

    /// Mirrors a (C, H, W) tensor left-right (a new tensor).
    public static func flipHorizontally(_ t: Tensor) -> Tensor {
        precondition(t.rank == 3, "flipHorizontally expects (C, H, W)")
        let (c, h, w) = (t.shape[0], t.shape[1], t.shape[2])
        let out = Tensor(uninitialized: t.shape)
        let src = t.pointer, dst = out.pointer
        for r in 0..<(c * h) {
            for x in 0..<w { dst[r * w + x] = src[r * w + w - 1 - x] }
        }
        return out
    }

    /// Full pipeline from an image file: decode, center crop, to [-1, 1].
    public static func load(path: String, size: Int) throws -> Tensor {
        toTensor(centerCrop(try ImageIO.decode(path: path), size: size))
    }
}
