#!/usr/bin/env bash
# test_cxx.sh: C++ operator new/delete go through memscope correctly.
#
# Why: libstdc++'s operator new calls malloc, so every C++ program that is
# run under LD_PRELOAD=libmemscope.so allocates through memscope; containers
# churn many sizes and free on other paths (sized delete, aligned new).  We
# build a small program with g++, run it with and without the preload, and
# require identical output (a checksum of container contents) and exit 0.
set -u
cd "$(dirname "$0")/.." || exit 1
LIB="${MEMSCOPE_LIB:-$PWD/build/libmemscope.so}"   # override to try another malloc
if ! command -v g++ >/dev/null 2>&1; then
    # a skip would count as a pass: g++ is a declared dependency
    echo "FAIL: g++ not installed (scripts/install-deps.sh installs it)"; exit 1
fi
if [ ! -f "$LIB" ]; then
    echo "FAIL: $LIB missing (run make lib first)"; exit 1
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/memscope-cxx.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

cat > "$TMP/churn.cpp" <<'CPP'
// Container churn: vectors, strings, maps, unordered_maps, shared_ptr,
// over-aligned new; prints a checksum that must not depend on the allocator.
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

struct alignas(64) Wide { double v[8]; };

static uint64_t churn(uint32_t seed, int rounds) {
    uint64_t sum = 0;
    uint32_t x = seed;
    auto rnd = [&x]() { x ^= x << 13; x ^= x >> 17; x ^= x << 5; return x; };
    for (int r = 0; r < rounds; r++) {
        std::vector<std::string> v;
        std::map<std::string, std::vector<int>> m;
        std::unordered_map<uint32_t, std::string> u;
        for (int i = 0; i < 2000; i++) {
            std::string s(rnd() % 300, char('a' + rnd() % 26));
            s += std::to_string(i);
            v.push_back(s);
            m[s.substr(0, 8)].push_back(i);
            u[rnd() % 5000] = s;
        }
        std::vector<std::unique_ptr<Wide>> w;
        for (int i = 0; i < 200; i++) {
            w.emplace_back(new Wide());
            if (reinterpret_cast<uintptr_t>(w.back().get()) % 64 != 0) { std::puts("misaligned"); return 0; }
            w.back()->v[i % 8] = i;
        }
        std::vector<char> big(1 << 20 | (rnd() % 100000), 'z');
        auto sp = std::make_shared<std::vector<long>>(10000, r);
        for (auto &s : v) for (char c : s) sum = sum * 31 + (unsigned char)c;
        for (auto &kv : m) sum += kv.first.size() * kv.second.size();
        for (auto &kv : u) sum ^= kv.first + kv.second.size();
        for (auto &p : w) sum += (uint64_t)p->v[0];
        sum += big[big.size() - 1] + (*sp)[9999];
        v.erase(v.begin(), v.begin() + 1000);
        v.shrink_to_fit();
        sum += v.size();
    }
    return sum;
}

int main() {
    uint64_t results[4] = {0, 0, 0, 0};
    std::vector<std::thread> t;
    for (int i = 0; i < 4; i++) t.emplace_back([i, &results]() { results[i] = churn(1234u + i, 12); });
    for (auto &th : t) th.join();
    try {
        std::vector<char> huge(SIZE_MAX / 4);
        std::puts("huge allocation unexpectedly succeeded");
    } catch (const std::bad_alloc &) {
        std::puts("bad_alloc ok");
    } catch (const std::length_error &) {
        std::puts("bad_alloc ok");
    }
    std::printf("main %llu\n", (unsigned long long)churn(42, 10));
    for (int i = 0; i < 4; i++) std::printf("thread%d %llu\n", i, (unsigned long long)results[i]);
    return 0;
}
CPP

if ! g++ -std=c++17 -O1 -pthread -o "$TMP/churn" "$TMP/churn.cpp" 2>"$TMP/cc.err"; then
    echo "FAIL: g++ could not build the test program:"; cat "$TMP/cc.err"; exit 1
fi
"$TMP/churn" >"$TMP/plain.out" 2>"$TMP/plain.err"; rc_plain=$?
LD_PRELOAD="$LIB" "$TMP/churn" >"$TMP/ms.out" 2>"$TMP/ms.err"; rc_ms=$?
fail=0
if [ "$rc_plain" -ne 0 ]; then echo "FAIL: plain run exited $rc_plain"; fail=1; fi
if [ "$rc_ms" -ne 0 ]; then
    echo "FAIL: run under memscope exited $rc_ms"; head -20 "$TMP/ms.err"; fail=1
fi
if ! cmp -s "$TMP/plain.out" "$TMP/ms.out"; then
    echo "FAIL: output differs under memscope:"; diff "$TMP/plain.out" "$TMP/ms.out" | head -20; fail=1
fi
# Also a program linked against the library the way a user would.
if ! g++ -std=c++17 -O1 -pthread -o "$TMP/churn_linked" "$TMP/churn.cpp" \
        -L"$(dirname "$LIB")" -lmemscope -Wl,-rpath,"$(dirname "$LIB")" 2>"$TMP/cc2.err"; then
    echo "FAIL: g++ could not link with -lmemscope:"; cat "$TMP/cc2.err"; fail=1
else
    "$TMP/churn_linked" >"$TMP/linked.out" 2>"$TMP/linked.err"; rc=$?
    if [ "$rc" -ne 0 ] || ! cmp -s "$TMP/plain.out" "$TMP/linked.out"; then
        echo "FAIL: -lmemscope build: exit $rc, output differs or run failed"
        diff "$TMP/plain.out" "$TMP/linked.out" | head; head -20 "$TMP/linked.err"; fail=1
    fi
fi
if [ "$fail" -eq 0 ]; then echo "test_cxx: ok ($(wc -l <"$TMP/plain.out") lines identical)"; fi
exit "$fail"
