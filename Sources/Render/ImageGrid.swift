// Composing generated images into a labelled PNG grid (one row per class, label on the left),
// and converting model outputs (3, H, W) in [-1, 1] to 8-bit images.

import Formats
import Foundation
import Tensor

public enum ImageGrid {
    /// (3, H, W) or (1, H, W) floats in [-1, 1] -> 8-bit RGB: clamp, (x + 1) * 127.5, round.
    public static func image(fromTensor t: Tensor) -> RGBImage {
        precondition(t.rank == 3 && (t.shape[0] == 3 || t.shape[0] == 1), "expected (3, H, W) or (1, H, W), got \(t.shape)")
        let c = t.shape[0], h = t.shape[1], w = t.shape[2]
        var out = [UInt8](repeating: 0, count: h * w * 3)
        let p = t.pointer
        for k in 0..<3 {
            let plane = p + (c == 3 ? k : 0) * h * w
            for i in 0..<(h * w) {
                let v = max(-1, min(1, plane[i].isNaN ? -1 : plane[i]))
                out[3 * i + k] = UInt8(((v + 1) * 127.5).rounded())
            }
        }
        return RGBImage(width: w, height: h, channels: 3, pixels: out)
    }

    /// Each (3, H, W) slice of a (B, 3, H, W) tensor as an image.
    public static func images(fromBatch t: Tensor) -> [RGBImage] {
        precondition(t.rank == 4, "expected (B, 3, H, W), got \(t.shape)")
        let per = t.shape[1] * t.shape[2] * t.shape[3]
        return (0..<t.shape[0]).map { b in
            image(fromTensor: Tensor(storage: t.storage, shape: Array(t.shape.dropFirst()), offset: t.offset + b * per))
        }
    }

    /// Lays out `rows` (each a list of same-size images) with `labels` drawn left of each row.
    /// Missing labels draw nothing; `padding` pixels separate cells; `scale` enlarges the font.
    public static func compose(rows: [[RGBImage]], labels: [String] = [], padding: Int = 2, scale: Int = 1,
                               title: String? = nil) -> Canvas {
        let cells = rows.flatMap { $0 }
        guard let first = cells.first else { return Canvas(width: 1, height: 1) }
        let cw = first.width, ch = first.height
        let columns = rows.map(\.count).max() ?? 0
        let labelWidth = labels.isEmpty ? 0 : (labels.map { BitmapFont.width($0, scale: scale) }.max() ?? 0) + 4 * scale
        let titleHeight = title == nil ? 0 : (BitmapFont.glyphHeight + 4) * scale
        let width = labelWidth + padding + columns * (cw + padding)
        let height = titleHeight + padding + rows.count * (ch + padding)
        var canvas = Canvas(width: width, height: height)
        if let title { canvas.text(title, x: padding, y: 2 * scale, scale: scale) }
        for (r, row) in rows.enumerated() {
            let y = titleHeight + padding + r * (ch + padding)
            if r < labels.count {
                let ty = y + (ch - BitmapFont.glyphHeight * scale) / 2
                canvas.text(labels[r], x: 2 * scale, y: max(0, ty), scale: scale)
            }
            for (k, img) in row.enumerated() {
                precondition(img.width == cw && img.height == ch, "grid images must share one size")
                canvas.paste(img, x: labelWidth + padding + k * (cw + padding), y: y)
            }
        }
        return canvas
    }

    /// Convenience: lay out `images` (row-major, `columns` per row) and write a PNG.
    public static func writePNG(path: String, images: [RGBImage], columns: Int, labels: [String] = [],
                                scale: Int = 1, title: String? = nil, text: [String: String] = [:]) throws {
        guard columns > 0 else { throw PipelineError.invalidArgument("An image grid needs at least one column.") }
        let rows = stride(from: 0, to: images.count, by: columns).map { Array(images[$0..<min($0 + columns, images.count)]) }
        try compose(rows: rows, labels: labels, scale: scale, title: title).writePNG(path: path, text: text)
    }
}
