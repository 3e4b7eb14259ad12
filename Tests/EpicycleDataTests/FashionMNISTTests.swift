import EpicycleData
import Testing
import TestSupport

/// The real Fashion-MNIST from Debian's dataset-fashion-mnist package (scripts/setup installs it).
@Suite struct FashionMNISTTests {
    @Test func defaultDatasetHasTheDocumentedCounts() throws {
        let source = try DatasetSource.resolve(name: nil, folder: nil)
        #expect(source.name == "fashion-mnist" && source.format == .idx)
        let splits = try loadDataset(source)
        #expect(splits.training.count == 60_000 && splits.test.count == 10_000)
        #expect(splits.training.classCounts() == [Int](repeating: 6_000, count: 10))
        #expect(splits.test.classCounts() == [Int](repeating: 1_000, count: 10))
        #expect(splits.training.imageShape == [28, 28, 1])
        #expect(splits.training.classNames[9] == "Ankle boot")
        // The first training and test images are both ankle boots.
        #expect(splits.training.labels[0] == 9 && splits.test.labels[0] == 9)
        // The statistics every Fashion-MNIST recipe quotes: mean 0.2860, deviation 0.3530.
        let statistics = splits.training.channelStatistics()
        expectClose(statistics.mean, [0.2860], rtol: 0, atol: 5e-5, "mean")
        expectClose(statistics.standardDeviation, [0.3530], rtol: 0, atol: 5e-5, "deviation")
        // The paper-style limited-data view and a source/target class split.
        #expect(try splits.training.first(4_000).count == 4_000)
        let target = try splits.training.classes([5, 6, 7, 8, 9])
        #expect(target.classCounts() == [Int](repeating: 6_000, count: 5))
    }
}
