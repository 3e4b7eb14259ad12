import EpicycleData
import EpicycleRuntime
import Testing
import TestSupport

private let images = ImageDataset.synthetic(count: 50, height: 9, width: 7, channels: 3, classCount: 4, seed: 2)

private func allBatches(_ loader: DataLoader, epoch: Int, batchSize: Int, strength: Float) -> [Batch] {
    Array(loader.epoch(epoch, batchSize: batchSize, strength: strength))
}

@Suite struct LoaderTests {
    @Test func batchesAreIdenticalWhateverTheThreadCount() {
        let loaders = [0, 1, 3].map { DataLoader(dataset: images, policy: .full, seed: 9, workerCount: $0, prefetchCount: 2) }
        let reference = allBatches(loaders[0], epoch: 4, batchSize: 8, strength: 1)
        #expect(reference.count == 7)
        for loader in loaders.dropFirst() {
            #expect(allBatches(loader, epoch: 4, batchSize: 8, strength: 1) == reference, "\(loader.workerCount) workers")
        }
        #expect(loaders[1].batch(5, epoch: 4, batchSize: 8, strength: 1) == reference[5])
    }

    @Test func sameSeedSameBatchesOtherSeedOrEpochOthers() {
        let first = DataLoader(dataset: images, policy: .full, seed: 9), second = DataLoader(dataset: images, policy: .full, seed: 9)
        let batches = allBatches(first, epoch: 0, batchSize: 16, strength: 0.5)
        #expect(allBatches(second, epoch: 0, batchSize: 16, strength: 0.5) == batches)
        #expect(allBatches(DataLoader(dataset: images, policy: .full, seed: 10), epoch: 0, batchSize: 16, strength: 0.5) != batches)
        #expect(allBatches(first, epoch: 1, batchSize: 16, strength: 0.5) != batches)
    }

    @Test func everyEpochVisitsEverySampleOnceWithItsLabel() {
        let loader = DataLoader(dataset: images, seed: 3)
        for epoch in 0..<3 {
            let batches = allBatches(loader, epoch: epoch, batchSize: 16, strength: 0)
            let visited = batches.flatMap(\.sampleIndices)
            #expect(visited.sorted() == Array(0..<50))
            #expect(visited == loader.order(epoch: epoch))
            for batch in batches { #expect(batch.labels == batch.sampleIndices.map { images.labels[$0] }) }
        }
        #expect(loader.order(epoch: 0) != loader.order(epoch: 1))
        #expect(DataLoader(dataset: images, seed: 3, shuffle: false).order(epoch: 5) == Array(0..<50))
    }

    @Test func batchSizeChangesBetweenEpochsAndDropLastDropsTheRemainder() {
        let loader = DataLoader(dataset: images, seed: 1, workerCount: 2)
        #expect(allBatches(loader, epoch: 0, batchSize: 16, strength: 0).map(\.count) == [16, 16, 16, 2])
        #expect(allBatches(loader, epoch: 1, batchSize: 25, strength: 0).map(\.count) == [25, 25])
        #expect(allBatches(loader, epoch: 2, batchSize: 64, strength: 0).map(\.count) == [50])
        let dropping = DataLoader(dataset: images, seed: 1, dropLast: true)
        #expect(allBatches(dropping, epoch: 0, batchSize: 16, strength: 0).map(\.count) == [16, 16, 16])
        #expect(dropping.batchCount(batchSize: 64) == 0)
        #expect(allBatches(dropping, epoch: 0, batchSize: 64, strength: 0).isEmpty)
        let batch = loader.batch(0, epoch: 0, batchSize: 16)
        #expect(batch.images.shape == [16, 9, 7, 3])
    }

    @Test func imagesAreNormalisedPerChannel() {
        let statistics = images.channelStatistics()
        let loader = DataLoader(dataset: images, seed: 1, shuffle: false)
        let batch = loader.batch(0, epoch: 0, batchSize: 50)
        // Element k of the batch is pixel k of the dataset, channel k mod 3.
        let expected = images.pixels.enumerated().map { k, pixel in
            (Float(pixel) / 255 - statistics.mean[k % 3]) / statistics.standardDeviation[k % 3]
        }
        expectClose(batch.images.scalars, expected, rtol: 1e-5, atol: 1e-5, "normalised")
        // Over the whole dataset each channel then has mean 0 and deviation 1.
        for channel in 0..<3 {
            let values = stride(from: channel, to: batch.images.count, by: 3).map { Double(batch.images.scalars[$0]) }
            let mean = values.reduce(0, +) / Double(values.count)
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)
            #expect(abs(mean) < 1e-4 && abs(variance - 1) < 1e-4)
        }
    }

    @Test func strengthZeroMatchesNoAugmentationBitwise() {
        let plain = allBatches(DataLoader(dataset: images, policy: .none, seed: 4), epoch: 2, batchSize: 16, strength: 0)
        let full = allBatches(DataLoader(dataset: images, policy: .full, seed: 4), epoch: 2, batchSize: 16, strength: 0)
        #expect(full == plain)
        #expect(full.allSatisfy { $0.partnerLabels == nil && $0.mixWeight == 1 })
        let strong = allBatches(DataLoader(dataset: images, policy: .full, seed: 4), epoch: 2, batchSize: 16, strength: 1)
        #expect(zip(strong, plain).allSatisfy { $0.images != $1.images })
    }

    @Test func mixupBlendsEachImageWithItsReversedPartner() {
        let plain = DataLoader(dataset: images, seed: 6).batch(1, epoch: 3, batchSize: 9, strength: 1)
        let mixed = DataLoader(dataset: images, policy: AugmentationPolicy([.mixup()]), seed: 6).batch(1, epoch: 3, batchSize: 9, strength: 1)
        let lambda = mixed.mixWeight
        #expect(lambda > 0 && lambda < 1)
        #expect(mixed.labels == plain.labels && mixed.partnerLabels == plain.labels.reversed())
        let size = 9 * 7 * 3
        var expected = [Float]()
        for i in 0..<9 {
            let own = plain.images.scalars[(i * size)..<((i + 1) * size)]
            let partner = plain.images.scalars[((8 - i) * size)..<((9 - i) * size)]
            expected += zip(own, partner).map { i == 4 ? $0 : lambda * $0 + (1 - lambda) * $1 }
        }
        expectClose(mixed.images.scalars, expected, rtol: 1e-5, atol: 1e-5, "mixup")
    }

    @Test func cutmixPastesABoxWhoseAreaGivesLambda() {
        // Every image is one constant value, so each output pixel shows whose it is.
        let constant = ImageDataset(name: "constant", height: 8, width: 8, channels: 1, classNames: ["a", "b"],
                                    pixels: (0..<10).flatMap { [UInt8](repeating: UInt8(20 * $0), count: 64) },
                                    labels: (0..<10).map { Int32($0 % 2) })
        let loader = DataLoader(dataset: constant, policy: AugmentationPolicy([.cutmix()]), seed: 5, shuffle: false)
        var sawMixing = false
        for epoch in 0..<5 {
            let batch = loader.batch(0, epoch: epoch, batchSize: 10, strength: 1)
            let plain = DataLoader(dataset: constant, seed: 5, shuffle: false).batch(0, epoch: epoch, batchSize: 10)
            #expect(batch.partnerLabels == batch.labels.reversed())
            for i in 0..<10 where i != 9 - i {
                let values = Array(batch.images.scalars[(i * 64)..<((i + 1) * 64)])
                let own = plain.images.scalars[i * 64], partner = plain.images.scalars[(9 - i) * 64]
                #expect(values.allSatisfy { $0 == own || $0 == partner })
                let ownShare = Float(values.filter { $0 == own }.count) / 64
                #expect(abs(ownShare - batch.mixWeight) < 1e-6, "image \(i): own share \(ownShare), λ \(batch.mixWeight)")
                sawMixing = sawMixing || ownShare < 1
            }
        }
        #expect(sawMixing)
    }

    @Test func abandoningAnEpochStopsItsWorkers() {
        let loader = DataLoader(dataset: images, policy: .full, seed: 1, workerCount: 2, prefetchCount: 1)
        for batch in loader.epoch(0, batchSize: 4, strength: 1) {
            #expect(batch.count == 4)
            break
        }
        #expect(allBatches(loader, epoch: 1, batchSize: 10, strength: 1).count == 5)
    }

    @Test func unlabeledPoolBatchesCarryHiddenLabels() throws {
        let (_, pool) = try images.semiSupervisedSplit(labeledPerClass: 2)
        let batch = DataLoader(dataset: pool, policy: .full, seed: 1).batch(0, epoch: 0, batchSize: 8, strength: 1)
        #expect(batch.labels.allSatisfy { $0 == ImageDataset.hiddenLabel })
    }
}
