import EpicycleData
import EpicycleRuntime
import Testing
import TestSupport

/// 30 tiny images: sample i has every pixel i, label i mod 3 (so 10 per class).
func countingDataset(count: Int = 30, classCount: Int = 3) -> ImageDataset {
    ImageDataset(name: "counting", height: 2, width: 2, channels: 1, classNames: (0..<classCount).map { "c\($0)" },
                 pixels: (0..<count).flatMap { [UInt8](repeating: UInt8($0), count: 4) },
                 labels: (0..<count).map { Int32($0 % classCount) })
}

/// The sample numbers of a counting dataset view, read back from its pixels.
func sampleNumbers(_ dataset: ImageDataset) -> [Int] {
    stride(from: 0, to: dataset.pixels.count, by: 4).map { Int(dataset.pixels[$0]) }
}

@Suite struct ViewTests {
    @Test func firstNKeepsOrder() throws {
        let view = try countingDataset().first(7)
        #expect(sampleNumbers(view) == Array(0..<7))
        #expect(view.labels == [0, 1, 2, 0, 1, 2, 0])
        #expect(view.name == "counting, first 7")
        #expect(throws: DataError.self) { try countingDataset().first(31) }
    }

    @Test func firstPerClassTakesEachClassInOrder() throws {
        let view = try countingDataset().firstPerClass(2)
        #expect(sampleNumbers(view) == [0, 1, 2, 3, 4, 5])
        #expect(view.classCounts() == [2, 2, 2])
        expectDataError(["cannot take 11 samples per class", "class 0 (c0) has 10"]) {
            _ = try countingDataset().firstPerClass(11)
        }
    }

    @Test func classListsAreRelabelledInListedOrder() throws {
        let data = countingDataset(count: 40, classCount: 10)
        let source = try data.classes([0, 1, 2, 3, 4]), target = try data.classes([5, 6, 7, 8, 9])
        #expect(source.count == 20 && target.count == 20)
        #expect(source.labels.allSatisfy { (0..<5).contains($0) } && target.labels.allSatisfy { (0..<5).contains($0) })
        #expect(sampleNumbers(target).prefix(5) == [5, 6, 7, 8, 9])
        #expect(target.labels.prefix(5) == [0, 1, 2, 3, 4])
        #expect(target.classNames == ["c5", "c6", "c7", "c8", "c9"])
        let reordered = try data.classes([7, 2])
        #expect(zip(sampleNumbers(reordered), reordered.labels).allSatisfy { number, label in
            label == (number % 10 == 7 ? 0 : 1)
        })
        #expect(throws: DataError.self) { try data.classes([1, 1]) }
        #expect(throws: DataError.self) { try data.classes([10]) }
        // Messages name the bad entry and stay short however long the list.
        for (list, expected) in [([3, 1, 3], "class 3 is listed twice in the class list (entry 2)"),
                                 (Array(0..<1000), "class 10 (entry 10 of the class list) is not in 0..<10")] {
            do {
                _ = try data.classes(list)
                Issue.record("\(list.count) classes must be refused")
            } catch {
                #expect("\(error)".contains(expected), "got: \(error)")
                #expect("\(error)".count < 200)
            }
        }
    }

    @Test func validationSplitIsDisjointCompleteAndSeeded() throws {
        let data = countingDataset()
        let (training, validation) = try data.validationSplit(count: 8, seed: 5)
        #expect(training.count == 22 && validation.count == 8)
        let trainingNumbers = sampleNumbers(training), validationNumbers = sampleNumbers(validation)
        #expect(Set(trainingNumbers).union(validationNumbers) == Set(0..<30))
        #expect(trainingNumbers == trainingNumbers.sorted() && validationNumbers == validationNumbers.sorted())
        #expect(try data.validationSplit(count: 8, seed: 5).validation == validation)
        #expect(try data.validationSplit(count: 8, seed: 6).validation != validation)
        #expect(validation.labels == validationNumbers.map { Int32($0 % 3) })
    }

    @Test func semiSupervisedSplitHidesThePoolsLabels() throws {
        let (labeled, pool) = try countingDataset().semiSupervisedSplit(labeledPerClass: 3)
        #expect(labeled.classCounts() == [3, 3, 3])
        #expect(pool.count == 21)
        #expect(pool.labels.allSatisfy { $0 == ImageDataset.hiddenLabel })
        #expect(pool.classCounts() == [0, 0, 0])
        #expect(Set(sampleNumbers(labeled)).union(sampleNumbers(pool)) == Set(0..<30))
    }

    @Test func channelStatisticsMatchHandComputation() {
        // Two 1×2 RGB images: red 0 and 255, green always 51, blue 0, 0, 255, 255.
        let data = ImageDataset(name: "rgb", height: 1, width: 2, channels: 3, classNames: ["a"],
                                pixels: [0, 51, 0, 255, 51, 0, 0, 51, 255, 255, 51, 255], labels: [0, 0])
        let statistics = data.channelStatistics()
        expectClose(statistics.mean, [0.5, 0.2, 0.5], rtol: 0, atol: 1e-6, "mean")
        expectClose(statistics.standardDeviation, [0.5, 0, 0.5], rtol: 0, atol: 1e-6, "standard deviation")
    }
}
