# kiln_library(<name> <sources...>): one of kiln's static libraries, with the project's root on its
# include path (includes read "server/supervisor/worker_pool.h") and kiln's warnings on its own
# sources. Each caller adds what it links (target_link_libraries).
function(kiln_library name)
  add_library(${name} ${ARGN})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(${name} PRIVATE ${KILN_WARNINGS})
endfunction()
