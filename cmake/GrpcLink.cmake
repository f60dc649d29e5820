# modhost_grpc, modhost_openssl: how modhost's programs link gRPC, protobuf
# and OpenSSL.
#
# The programs a user starts often (the `modhost` CLI, which is also the
# engine daemon, and the isolated module runner) link Debian's static
# archives of gRPC, protobuf, upb, re2, c-ares, abseil and OpenSSL instead of
# their 50 shared libraries: the dynamic loader then resolves 10 libraries,
# not 60, and the CLI starts in about 3 ms instead of 9 (docs/benchmarks.md,
# "Speed"). modhost_static_grpc(TARGET...) marks them; everything else (the
# tests, the benchmarks) links the shared libraries and links faster. A
# process has one copy either way: the choice follows the executable being
# linked ($<TARGET_PROPERTY:MODHOST_STATIC_GRPC> of the head target). zlib
# stays shared. -DMODHOST_STATIC_GRPC=OFF links every program shared.
include_guard(GLOBAL)

option(MODHOST_STATIC_GRPC "Link gRPC, protobuf and abseil statically into modhost's programs" ON)

find_package(ZLIB REQUIRED)
add_library(modhost_grpc INTERFACE)
add_library(modhost_openssl INTERFACE)
# The headers come from the packages' targets in both cases.
target_include_directories(modhost_grpc INTERFACE
                           $<TARGET_PROPERTY:gRPC::grpc++,INTERFACE_INCLUDE_DIRECTORIES>
                           $<TARGET_PROPERTY:protobuf::libprotobuf,INTERFACE_INCLUDE_DIRECTORIES>)
target_include_directories(modhost_openssl INTERFACE ${OPENSSL_INCLUDE_DIR})

function(modhost_static_grpc)
  if(MODHOST_STATIC_GRPC)
    set_target_properties(${ARGN} PROPERTIES MODHOST_STATIC_GRPC ON)
  endif()
endfunction()

set(_shared_grpc gRPC::grpc++ protobuf::libprotobuf)
set(_shared_ssl OpenSSL::SSL OpenSSL::Crypto)
if(NOT MODHOST_STATIC_GRPC)
  target_link_libraries(modhost_grpc INTERFACE ${_shared_grpc})
  target_link_libraries(modhost_openssl INTERFACE ${_shared_ssl})
  return()
endif()

find_library(_modhost_ssl_a NAMES libssl.a NO_CACHE)
find_library(_modhost_crypto_a NAMES libcrypto.a NO_CACHE)
if(NOT _modhost_ssl_a OR NOT _modhost_crypto_a)
  message(FATAL_ERROR "libssl.a or libcrypto.a is missing (libssl-dev); configure with -DMODHOST_STATIC_GRPC=OFF")
endif()
find_package(PkgConfig REQUIRED)
execute_process(COMMAND ${PKG_CONFIG_EXECUTABLE} --static --libs-only-l grpc++ protobuf
                OUTPUT_VARIABLE _modhost_grpc_libs RESULT_VARIABLE _modhost_grpc_rc
                OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _modhost_grpc_rc EQUAL 0)
  message(FATAL_ERROR "pkg-config cannot list gRPC's static libraries; install libgrpc++-dev, "
                      "or configure with -DMODHOST_STATIC_GRPC=OFF")
endif()
separate_arguments(_modhost_grpc_libs UNIX_COMMAND "${_modhost_grpc_libs}")
set(_archives "")
set(_system "")
foreach(flag IN LISTS _modhost_grpc_libs)
  string(REGEX REPLACE "^-l" "" name "${flag}")
  if(name MATCHES "^(ssl|crypto)$")
    continue()  # added to the group below
  endif()
  if(name MATCHES "^(z|m|rt|dl|atomic|pthread)$")
    list(APPEND _system "${flag}")
    continue()
  endif()
  find_library(_archive_${name} NAMES lib${name}.a NO_CACHE)
  if(NOT _archive_${name})
    message(FATAL_ERROR "lib${name}.a (a static library gRPC needs) is missing; "
                        "configure with -DMODHOST_STATIC_GRPC=OFF")
  endif()
  list(APPEND _archives "${_archive_${name}}")
endforeach()
list(REMOVE_DUPLICATES _archives)
list(REMOVE_DUPLICATES _system)
set(_static "$<BOOL:$<TARGET_PROPERTY:MODHOST_STATIC_GRPC>>")
# The archives reference each other in circles: one group.
# (Commas inside $<IF:...> are written $<COMMA>.)
set(_group "-Wl$<COMMA>--start-group" ${_archives} ${_modhost_ssl_a} ${_modhost_crypto_a} "-Wl$<COMMA>--end-group")
target_link_libraries(modhost_grpc INTERFACE "$<IF:${_static},${_group},${_shared_grpc}>" ZLIB::ZLIB
                                             Threads::Threads ${CMAKE_DL_LIBS} ${_system})
target_link_libraries(modhost_openssl INTERFACE
                      "$<IF:${_static},${_modhost_ssl_a};${_modhost_crypto_a},${_shared_ssl}>"
                      Threads::Threads ${CMAKE_DL_LIBS})
