// Pipeline: the jobs that tie the models together. The parts that need no model are their own
// targets beside it: Formats (PNG/JPEG, HDF5 latent cache, .npz, gzip/CRC-32, SHA-256,
// PipelineError), Datasets (Fashion-MNIST, image folders, ADM preprocessing, PIL-exact
// resampling) and Render (bitmap font and canvas, image grids, line and bar plots, progress bar).
//
//   Jobs/   the training driver (TrainingRun) with its two tasks (tokenizer, SiT), latent
//           precompute, generation; run folders
//   Eval/   evaluation job, the Fashion-MNIST classifier, image metrics, Frechet distance
//   Bench/  timing helpers; kernel, sgemm, tokenizer, SiT and end-to-end generation benchmarks
