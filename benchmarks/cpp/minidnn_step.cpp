// Times one gradient step of the authors' C++ framework (dcs-chalmers/shared-memory-sgd,
// MiniDNN + Eigen) on this machine, so that asgdbench can be compared with it in the same run.
//
// This file is asgdbench's own code: it only #includes the framework's MiniDNN headers, from
// the -I paths given at compile time (see benchmarks/scripts/cpp_reference.py, which builds
// it with the framework's own flags). None of the framework's code is in this repository.
//
//   minidnn_step NETWORK BATCH REPEATS      warm up, time REPEATS steps, print one JSON line
//   minidnn_step NETWORK BATCH --serve      read a count n per stdin line, run n steps, print
//                                           one JSON line of per-step times (for interleaving)
//
// NETWORK is mlp | cnn | lenet, built exactly as the framework's main.cpp builds them for
// MNIST (28x28x1 inputs, 10 classes): mlp = FullyConnected<ReLU> 784-128-128-128 then
// FullyConnected<Softmax> 128-10 (main.cpp with -L 3 -U 128); cnn and lenet as main.cpp's
// CNN / LENET branches (note MaxPooling<ReLU>: main.cpp applies a ReLU after each pooling too,
// which is idempotent after the conv's ReLU). Output: MultiClassEntropy on one-hot targets.
//
// One step is what NetworkExecutor::run_training does per minibatch, on one thread:
//   net->forward(x); net->backprop(x, y);        -> "median_ms"/"min_ms" (the gradient; the
//                                                   same span the framework's Leashed-SGD loop
//                                                   times as grad_comp)
//   net->get_loss(); net->update_cw(opt) (SGDM)   -> added in "step_median_ms"/"step_min_ms"
// Inputs are uniform [0, 1) pixels and random one-hot labels; a few distinct minibatches are
// cycled like the executor's pre-shuffled batches. Clock: std::chrono::steady_clock (wall),
// and the thread's CPU time (CLOCK_THREAD_CPUTIME_ID) for a loaded machine.

#define EIGEN_DONT_PARALLELIZE  // as MiniDNN.h does: one thread, "for fair comparison"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

// The framework's headers, in the order MiniDNN.h includes them (only those used here).
#include "Config.h"
#include "RNG.h"
#include "Layer.h"
#include "Layer/FullyConnected.h"
#include "Layer/Convolutional.h"
#include "Layer/MaxPooling.h"
#include "Activation/ReLU.h"
#include "Activation/Softmax.h"
#include "Output.h"
#include "Output/MultiClassEntropy.h"
#include "Optimizer.h"
#include "Optimizer/SGDM.h"
#include "Callback.h"
#include "ParameterContainer.h"
#include "NetworkTopology.h"

using namespace MiniDNN;
typedef Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> Matrix;

namespace {

const int kInputs = 28 * 28;
const int kClasses = 10;
const int kBatches = 4;  // distinct minibatches cycled through

bool build(const std::string &network, NetworkTopology &net) {
    if (network == "mlp") {  // main.cpp, ARCHITECTURE::MLP, -L 3 -U 128
        net.add_layer(new FullyConnected<ReLU>(kInputs, 128));
        net.add_layer(new FullyConnected<ReLU>(128, 128));
        net.add_layer(new FullyConnected<ReLU>(128, 128));
        net.add_layer(new FullyConnected<Softmax>(128, kClasses));
    } else if (network == "cnn") {  // main.cpp, ARCHITECTURE::CNN
        net.add_layer(new Convolutional<ReLU>(28, 28, 1, 4, 3, 3));
        net.add_layer(new MaxPooling<ReLU>(26, 26, 4, 2, 2));
        net.add_layer(new Convolutional<ReLU>(13, 13, 4, 8, 3, 3));
        net.add_layer(new MaxPooling<ReLU>(11, 11, 8, 2, 2));
        net.add_layer(new FullyConnected<ReLU>(5 * 5 * 8, 128));
        net.add_layer(new FullyConnected<Softmax>(128, kClasses));
    } else if (network == "lenet") {  // main.cpp, ARCHITECTURE::LENET, MNIST branch
        net.add_layer(new Convolutional<ReLU>(28, 28, 1, 6, 5, 5));
        net.add_layer(new MaxPooling<ReLU>(24, 24, 6, 2, 2));
        net.add_layer(new Convolutional<ReLU>(12, 12, 6, 16, 5, 5));
        net.add_layer(new MaxPooling<ReLU>(8, 8, 16, 2, 2));
        net.add_layer(new FullyConnected<ReLU>(4 * 4 * 16, 120));
        net.add_layer(new FullyConnected<Softmax>(120, kClasses));
    } else {
        return false;
    }
    return true;
}

double thread_cpu_ms() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

struct Sample {
    double grad_ms, step_ms, grad_cpu_ms;
};

class Bench {
public:
    Bench(const std::string &network, int batch) : params_(new ParameterContainer()), net_(params_) {
        ok_ = build(network, net_);
        if (!ok_) return;
        net_.set_output(new MultiClassEntropy());
        net_.init(0, 0.01, 1337);  // main.cpp: N(0, 0.01^2), rand_seed 1337
        opt_.initialize_state(params_->param_list.size());
        opt_.m_lrate = 0.01;  // values do not change the work done per step
        opt_.mu = 0.0;
        RNG rng(42);
        for (int b = 0; b < kBatches; ++b) {
            Matrix x(kInputs, batch), y = Matrix::Zero(kClasses, batch);
            for (int i = 0; i < x.size(); ++i) x(i) = rng.rand();
            for (int j = 0; j < batch; ++j) y(std::min(kClasses - 1, int(rng.rand() * kClasses)), j) = 1;
            xs_.push_back(x);
            ys_.push_back(y);
        }
    }

    bool ok() const { return ok_; }

    Sample step() {
        const Matrix &x = xs_[next_ % kBatches];
        const Matrix &y = ys_[next_ % kBatches];
        ++next_;
        const double cpu0 = thread_cpu_ms();
        const auto t0 = std::chrono::steady_clock::now();
        net_.forward(x);
        net_.backprop(x, y);
        const auto t1 = std::chrono::steady_clock::now();
        const double cpu1 = thread_cpu_ms();
        sink_ += net_.get_loss();
        net_.update_cw(&opt_);
        const auto t2 = std::chrono::steady_clock::now();
        return {std::chrono::duration<double, std::milli>(t1 - t0).count(),
                std::chrono::duration<double, std::milli>(t2 - t0).count(), cpu1 - cpu0};
    }

private:
    ParameterContainer *params_;  // owned by the framework's objects, as in main.cpp
    NetworkTopology net_;
    SGDM opt_;
    std::vector<Matrix> xs_, ys_;
    long next_ = 0;
    volatile double sink_ = 0;  // keeps the loss computation alive
    bool ok_ = false;
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string list(const std::vector<Sample> &s, double Sample::*field) {
    std::ostringstream out;
    out.precision(6);
    out << "[";
    for (size_t i = 0; i < s.size(); ++i) out << (i ? ", " : "") << s[i].*field;
    out << "]";
    return out.str();
}

const char *scalar_name() { return std::is_same<Scalar, double>::value ? "double" : "float"; }

int usage() {
    std::fprintf(stderr, "usage: minidnn_step {mlp|cnn|lenet} BATCH (REPEATS | --serve)\n");
    return 2;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 4) return usage();
    const std::string network = argv[1];
    const int batch = std::atoi(argv[2]);
    const bool serve = std::string(argv[3]) == "--serve";
    const int repeats = serve ? 0 : std::atoi(argv[3]);
    if (batch < 1 || (!serve && repeats < 1)) return usage();
    Bench bench(network, batch);
    if (!bench.ok()) return usage();

    if (serve) {  // one JSON line of per-step times per request; the caller interleaves
        std::string line;
        while (std::getline(std::cin, line)) {
            const int n = std::atoi(line.c_str());
            std::vector<Sample> s;
            for (int i = 0; i < n; ++i) s.push_back(bench.step());
            std::cout << "{\"grad_ms\": " << list(s, &Sample::grad_ms)
                      << ", \"step_ms\": " << list(s, &Sample::step_ms)
                      << ", \"grad_cpu_ms\": " << list(s, &Sample::grad_cpu_ms) << "}" << std::endl;
        }
        return 0;
    }

    const int warmup = std::max(3, repeats / 10);
    for (int i = 0; i < warmup; ++i) bench.step();
    std::vector<double> grad, step, cpu;
    for (int i = 0; i < repeats; ++i) {
        const Sample s = bench.step();
        grad.push_back(s.grad_ms);
        step.push_back(s.step_ms);
        cpu.push_back(s.grad_cpu_ms);
    }
    std::printf("{\"network\": \"%s\", \"batch\": %d, \"scalar\": \"%s\", \"median_ms\": %.6g, "
                "\"min_ms\": %.6g, \"repeats\": %d, \"step_median_ms\": %.6g, \"step_min_ms\": %.6g, "
                "\"cpu_median_ms\": %.6g, \"timed\": \"forward+backprop\", "
                "\"step_timed\": \"forward+backprop+get_loss+update_cw(SGDM)\", \"threads\": 1}\n",
                network.c_str(), batch, scalar_name(), median(grad),
                *std::min_element(grad.begin(), grad.end()), repeats, median(step),
                *std::min_element(step.begin(), step.end()), median(cpu));
    return 0;
}
