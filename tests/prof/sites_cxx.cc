// sites_cxx.cc: a C++ allocation site for tests/test_profile.sh: the leak
// report and memscope report show demangled names; the pprof file keeps the
// linkage name as system_name.
#include <cstring>
#include <unistd.h>

namespace shapes {
struct Widget {
    char data[200];
    __attribute__((noinline)) static Widget *make(int n);
};
Widget *Widget::make(int n) {
    Widget *w = new Widget;
    memset(w->data, n, sizeof w->data);
    return w;
}
}  // namespace shapes

static shapes::Widget *volatile kept[4];

int main() {
    for (int i = 0; i < 4; i++) kept[i] = shapes::Widget::make(i);
    return write(1, "cxx: done\n", 10) == 10 ? 0 : 1;
}
