import Datasets
import Formats
import XCTest

final class ClassVocabularyTests: XCTestCase {
    func testImageNetTableIsTheSortedThousand() {
        let e = ImageNetClasses.entries
        XCTAssertEqual(e.count, 1000)
        XCTAssertEqual(Set(e.map(\.wnid)).count, 1000)
        XCTAssertEqual(e.map(\.wnid), e.map(\.wnid).sorted())
        XCTAssertEqual(e[0].wnid, "n01440764"); XCTAssertEqual(e[0].name, "tench")
        XCTAssertEqual(e[207].wnid, "n02099601"); XCTAssertEqual(e[207].name, "golden retriever")
        XCTAssertEqual(e[999].wnid, "n15075141"); XCTAssertEqual(e[999].name, "toilet tissue")
        XCTAssertTrue(e.allSatisfy { $0.wnid.count == 9 && $0.wnid.hasPrefix("n") && !$0.lemmas.isEmpty })
    }

    func testThousandClassesWithoutNamesAreImageNet() throws {
        let v = ClassVocabulary(count: 1000, recorded: [])
        XCTAssertEqual(try v.resolve("golden_retriever"), 207)
        XCTAssertEqual(try v.resolve("Golden Retriever"), 207)
        XCTAssertEqual(try v.resolve("n02099601"), 207)
        XCTAssertEqual(try v.resolve("207"), 207)
        XCTAssertEqual(try v.resolve("toilet paper"), 999)   // a secondary lemma
        XCTAssertEqual(v.describe(207), "golden retriever (207, n02099601)")
    }

    func testAmbiguousAndMisspelledNames() {
        let v = ClassVocabulary(count: 1000, recorded: [])
        XCTAssertThrowsError(try v.resolve("crane")) { e in
            let m = oneSentence(e)
            XCTAssertTrue(m.contains("ambiguous") && m.contains("n02012849") && m.contains("n03126707"), m)
        }
        XCTAssertThrowsError(try v.resolve("golden retreiver")) { e in
            let m = oneSentence(e)
            XCTAssertTrue(m.contains("Did you mean golden retriever (207, n02099601)"), m)
            XCTAssertFalse(m.contains("tench"), "does not list all 1000 names: \(m)")
        }
        XCTAssertThrowsError(try v.resolve("qqqqzzzz")) { e in
            XCTAssertTrue(oneSentence(e).contains("indices 0..<1000"), oneSentence(e))
        }
        XCTAssertThrowsError(try v.resolve("1000"))
        XCTAssertThrowsError(try v.resolve("-1"))
    }

    func testRecordedWordNetIdsBecomeNames() throws {
        let ids = ["n01440764", "n02099601", "n15075141"]
        let v = ClassVocabulary(count: 3, recorded: ids)
        XCTAssertEqual(v.names, ["tench", "golden retriever", "toilet tissue"])
        XCTAssertEqual(try v.resolve("golden_retriever"), 1)
        XCTAssertEqual(try v.resolve("n15075141"), 2)
    }

    func testRecordedNamesAndSmallVocabularies() throws {
        let v = ClassVocabulary(count: FashionMNIST.classNames.count, recorded: FashionMNIST.classNames)
        XCTAssertEqual(try v.resolve("t-shirt/top"), 0)
        XCTAssertEqual(try v.resolve("ankle_boot"), 9)
        XCTAssertThrowsError(try v.resolve("sneakers")) { e in
            let m = oneSentence(e)
            XCTAssertTrue(m.contains("Did you mean Sneaker (7)") && m.contains("Known: T-shirt/top"), m)
        }
        let plain = ClassVocabulary(count: 4, recorded: [])
        XCTAssertEqual(plain.names, ["class 0", "class 1", "class 2", "class 3"])
        XCTAssertEqual(try plain.resolve("class 2"), 2)
    }
}
