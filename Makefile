# leank - learned K-cache channel pruning for long-context decoding.
#   make              library + programs into bin/ (CUDA kernels if nvcc is found)
#   make CUDA=0       CPU only;  make CUDA=1  require nvcc
#   make demo         the whole pipeline on data/models/leank-mini
#   make test         every CPU test (unit tests in C, shell tests of the programs)
#   make test-gpu     GPU tests (on a machine with an NVIDIA GPU)
#   make install PREFIX=/usr/local   programs, man pages, share/leank: configs, masks, the
#                     leank-mini model, leank-bench's HF script (the programs find it
#                     beside themselves: ../share/leank)
#   make O=DIR        put build/ and bin/ under DIR (parallel builds of one tree)
#   make test SAN=1   the same tests built with AddressSanitizer + UBSan (leaks on), in build-san, bin-san
#   make fuzz FUZZ_SECONDS=N   every libFuzzer target (tests/fuzz, needs clang) for N seconds each

O       ?= .
SAN     ?= 0
ifeq ($(SAN),1)
# beside bin/, so that bin-san/../data is the tree's data as for bin/
B       := $(O)/build-san
BIN     := $(O)/bin-san
else
B       := $(O)/build
BIN     := $(O)/bin
endif
PREFIX  ?= /usr/local
CC      ?= cc
CFLAGS  ?= -O2 -g -march=x86-64-v2
PKG_CONFIG ?= pkg-config

# lib/ in rooms: formats and I/O, tokenizer, model and its engines, training,
# sample preparation, benchmarks (each file includes its neighbours by name)
LIB_ROOMS   := io tokenizer model train prep bench
LIB_INC     := $(addprefix -Ilib/,$(LIB_ROOMS))
BLAS_CFLAGS := $(shell $(PKG_CONFIG) --cflags openblas 2>/dev/null)
BLAS_LIBS   := $(shell $(PKG_CONFIG) --libs openblas 2>/dev/null || echo -lopenblas)
# lib/ cannot see cmd/cli.h (the helpers that exit): calling one there is
# an undeclared function, an error
ALL_CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
               -Werror=implicit-function-declaration $(LIB_INC) -Ikernels $(BLAS_CFLAGS) -MMD -MP $(CFLAGS)
SAN_FLAGS   := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
ifeq ($(SAN),1)
  ALL_CFLAGS += $(SAN_FLAGS)
endif
# libyaml and utf8proc are linked statically: the GPU machine lacks their .so.
LDLIBS      := -Wl,-Bstatic -lyaml -lutf8proc -Wl,-Bdynamic -ljansson -lpcre2-8 -lzstd \
               $(BLAS_LIBS) -lm -lpthread

# ---- CUDA detection ----
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA ?= auto
ifeq ($(CUDA),auto)
  CUDA_ON := $(if $(NVCC),1,0)
else
  CUDA_ON := $(CUDA)
endif
ifeq ($(CUDA_ON),1)
  ifeq ($(NVCC),)
    $(error CUDA=1 but nvcc was not found: install the CUDA toolkit or build with CUDA=0)
  endif
  CUDA_HOME   ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  NVCCFLAGS   ?= -O3 -lineinfo -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_80,code=compute_80
  CU_SRC      := $(wildcard kernels/*.cu)
  CU_OBJ      := $(patsubst kernels/%.cu,$(B)/kernels/%.o,$(CU_SRC))
  ifneq ($(CU_SRC),)
    ALL_CFLAGS  += -I$(CUDA_HOME)/include
    LDLIBS      += -L$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
  endif
  # the engine's CUDA backend is on once its host file exists
  ifneq ($(wildcard kernels/engine_cuda.cu),)
    ALL_CFLAGS  += -DLEANK_CUDA=1
  endif
  # and the training backend once its file exists (lib/train/train.c stubs it until then)
  ifneq ($(wildcard kernels/train_cuda.cu),)
    ALL_CFLAGS  += -DLEANK_TRAIN_CUDA=1
  endif
endif

LIB_SRC  := $(wildcard $(addsuffix /*.c,$(addprefix lib/,$(LIB_ROOMS))))
LIB_OBJ  := $(patsubst lib/%.c,$(B)/lib/%.o,$(LIB_SRC)) $(CU_OBJ)
ifeq ($(O)$(SAN),.0)
  LIBA   := lib/libleank.a
else
  LIBA   := $(B)/libleank.a
endif
PROGS    := leank-prep leank-train leank-binarize leank-pack leank-decode leank-bench
PROG_BIN := $(addprefix $(BIN)/,$(PROGS))
# cmd/cli.c: what every program (the test programs too) shares and lib/ must
# not do: exit (lk_fail, lk_die, the exiting allocators, option values)
CLI_OBJ  := $(B)/cmd/cli.o
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BIN)/tests/%,$(UNIT_SRC))
MANS     := $(wildcard man/*.1 man/*.5 man/*.7)
# GPU tests (tests/gpu/gpu_*.c, C calling the CUDA runtime and kernels/kvcache.h): built with the CUDA backend, run by test-gpu.
ifneq ($(CU_SRC),)
GPU_SRC  := $(wildcard tests/gpu/gpu_*.c)
GPU_BIN  := $(patsubst tests/gpu/%.c,$(BIN)/tests/%,$(GPU_SRC))
endif

# Fuzz targets (tests/fuzz/fuzz_*.c): libFuzzer binaries under build/fuzz
# (clang only, `make fuzz`), and replay binaries bin/tests/fuzz_* (any
# compiler) that `make test` runs over the kept inputs in tests/fuzz/NAME/.
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_RBIN := $(patsubst tests/fuzz/%.c,$(BIN)/tests/%,$(FUZZ_SRC))

.SECONDARY:
.PHONY: all lib test test-gpu gpu-tests check-deps install clean demo fuzz
all: $(PROG_BIN)
	@echo "leank: built $(words $(PROGS)) programs in $(BIN)/ (CUDA=$(CUDA_ON))"

lib: $(LIBA)

$(LIBA): $(LIB_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	ar rcs $@ $^

$(B)/lib/%.o: lib/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(B)/cmd/%.o: cmd/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# no -Icmd: kernels/ is library too, and cannot see cmd/cli.h (the helpers that exit)
$(B)/kernels/%.o: kernels/%.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) $(LIB_INC) -Ikernels -MMD -MP -c $< -o $@

$(BIN)/%: $(B)/cmd/%.o $(CLI_OBJ) $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $< $(CLI_OBJ) $(LIBA) $(LDLIBS) -o $@

$(BIN)/tests/%: tests/unit/%.c tests/unit/t.h $(CLI_OBJ) $(LIBA)
	@mkdir -p $(@D) $(B)/tests
	$(CC) $(ALL_CFLAGS) -MF $(B)/tests/$*.d -Itests/unit -Icmd $< $(CLI_OBJ) $(LIBA) $(LDLIBS) -o $@

$(BIN)/tests/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c tests/fuzz/fuzz.h $(LIBA)
	@mkdir -p $(@D) $(B)/tests
	$(CC) $(ALL_CFLAGS) -MF $(B)/tests/fuzz_$*.d -Itests/fuzz $< tests/fuzz/replay.c $(LIBA) $(LDLIBS) -o $@

$(BIN)/tests/gpu_%: tests/gpu/gpu_%.c tests/unit/t.h $(CLI_OBJ) $(LIBA)
	@mkdir -p $(@D) $(B)/tests
	$(CC) $(ALL_CFLAGS) -MF $(B)/tests/gpu_$*.d -Itests/unit -Icmd $< $(CLI_OBJ) $(LIBA) $(LDLIBS) -o $@


# The whole pipeline on the model the project ships (dev/demo.sh says how).
demo: check-deps all
	@BIN=$(abspath $(BIN)) dev/demo.sh

check-deps:
	@tests/check-deps.sh

# under SAN=1 any sanitizer report (a leak included) fails the program, hence its test
SAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LEANK_SAN=1
test: check-deps all $(UNIT_BIN) $(FUZZ_RBIN) $(GPU_BIN)
	@$(if $(filter 1,$(SAN)),$(SAN_ENV)) LEANK_BIN=$(abspath $(BIN)) tests/run.sh

# On the GPU machine (no build headers there): carry bin/ and run tests/run.sh --gpu.
gpu-tests: all $(UNIT_BIN) $(GPU_BIN)

# SAN=1: the GPU test programs under compute-sanitizer (memcheck, racecheck)
test-gpu: gpu-tests
	@LEANK_BIN=$(abspath $(BIN)) LEANK_GPU=1 LEANK_GPU_SAN=$(SAN) tests/run.sh --gpu

# ---- libFuzzer: make fuzz [FUZZ_SECONDS=N] [FUZZ_TARGETS="config tsv"] ----
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_B       := $(O)/build/fuzz
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE $(LIB_INC) -Ikernels -Itests/fuzz $(BLAS_CFLAGS) -MMD -MP -g -O1 \
                -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_LIBA    := $(FUZZ_B)/libleank.a
FUZZ_BIN     := $(patsubst tests/fuzz/%.c,$(FUZZ_B)/%,$(FUZZ_SRC))

$(FUZZ_B)/lib/%.o: lib/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_LIBA): $(patsubst lib/%.c,$(FUZZ_B)/lib/%.o,$(LIB_SRC))
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_B)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_LIBA)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MF $(FUZZ_B)/fuzz_$*.d $< $(FUZZ_LIBA) $(LDLIBS) -o $@

fuzz:
	@FUZZ_CC=$(FUZZ_CC) tests/check-deps.sh fuzz
	@$(MAKE) --no-print-directory $(FUZZ_BIN)
	@LEANK_TOP=$(CURDIR) tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_B) $(if $(FUZZ_TARGETS),$(FUZZ_TARGETS),$(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRC)))

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	           $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(PROG_BIN) $(DESTDIR)$(PREFIX)/bin/
	for m in $(MANS); do s=$${m##*.}; install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man$$s/; done
	install -d $(DESTDIR)$(PREFIX)/share/leank/configs $(DESTDIR)$(PREFIX)/share/leank/models/leank-mini \
	           $(DESTDIR)$(PREFIX)/share/leank/bench $(DESTDIR)$(PREFIX)/share/leank/masks
	install -m 644 data/configs/*.yaml $(DESTDIR)$(PREFIX)/share/leank/configs/
	install -m 644 data/masks/*.safetensors data/masks/README.md $(DESTDIR)$(PREFIX)/share/leank/masks/
	install -m 644 data/models/leank-mini/* $(DESTDIR)$(PREFIX)/share/leank/models/leank-mini/
	install -m 644 dev/bench/hf_tokenize.py $(DESTDIR)$(PREFIX)/share/leank/bench/
	@echo "leank: installed in $(DESTDIR)$(PREFIX): bin/, share/man/, share/leank/{configs,masks,models/leank-mini,bench}"

clean:
	rm -rf $(B) $(BIN) $(O)/build-san $(O)/bin-san lib/libleank.a
	@# temporaries a killed program left behind (PATH.leank-tmp.PID.XXXXXX)
	find . -name '*.leank-tmp.*' -type f -delete

-include $(wildcard $(B)/lib/*/*.d $(B)/cmd/*.d $(B)/kernels/*.d $(B)/tests/*.d $(FUZZ_B)/lib/*/*.d $(FUZZ_B)/*.d)
