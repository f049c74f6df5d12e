# Compiler and linker flags shared by the top Makefile and the examples'
# Makefiles (which set TOP to the path of the top folder first).
TOP      ?= .
CC       ?= cc
OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
PKGS     += vips msgpack libzstd libtiff-4 libjpeg libcjson charls libopenjp2 zlib

# Debian ships BLIS without a pkg-config file; the OpenMP build is used so
# that our own OpenMP loops and BLIS share one thread pool.
BLIS_INC ?= /usr/include/x86_64-linux-gnu/blis-openmp
BLIS_LIB ?= /usr/lib/x86_64-linux-gnu/blis-openmp

# pkg-config is asked only when a recipe runs, after mk/deps.sh installed it.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# Open MPI, when installed (libopenmpi-dev: pkg-config's ompi-c, else mpicc):
# lib/numerics/dist.c then joins mpirun's jobs; without it every tool is one process.
# Linked as needed: only the tools that call lib/numerics/dist.h load libmpi.
MPI_PKG    = $(shell pkg-config --exists ompi-c 2>/dev/null && echo ompi-c)
MPI_CFLAGS = $(if $(MPI_PKG),$(shell pkg-config --cflags ompi-c),$(shell mpicc --showme:compile 2>/dev/null))
MPI_LIBS   = $(if $(MPI_PKG),$(shell pkg-config --libs ompi-c),$(shell mpicc --showme:link 2>/dev/null))
HAVE_MPI   = $(if $(MPI_PKG)$(MPI_LIBS),1,0)

# The library's layers (lib/LAYER/*.h), included by bare name.
LIB_DIRS   = base io numerics models training
ALL_CFLAGS = -std=c17 -D_GNU_SOURCE -Wall -Wextra -fopenmp -MMD -MP \
             $(LIB_DIRS:%=-I$(TOP)/lib/%) -isystem $(BLIS_INC) $(PKG_CFLAGS) -DMEDSSL_MPI=$(HAVE_MPI) $(MPI_CFLAGS) $(CFLAGS)
ALL_LDLIBS = $(PKG_LIBS) -Wl,--as-needed $(MPI_LIBS) -Wl,--no-as-needed -L$(BLIS_LIB) -Wl,-rpath,$(BLIS_LIB) -lblis \
             -fopenmp -lpthread -lm $(LDLIBS)

# Quiet build lines; V=1 shows the full commands.
ifeq ($(V),1)
Q =
say = @true
else
Q = @
say = @printf '  %-4s %s\n'
endif
