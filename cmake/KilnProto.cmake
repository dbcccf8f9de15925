# kiln_proto_library(<target> <proto files...>): compiles .proto files with protoc into a static
# library. Generated headers land in ${CMAKE_CURRENT_BINARY_DIR} and are included as
# "proto/<name>.pb.h".
function(kiln_proto_library target)
  set(srcs)
  set(hdrs)
  set(out_dir ${CMAKE_BINARY_DIR}/gen/proto)
  file(MAKE_DIRECTORY ${out_dir})
  foreach(proto ${ARGN})
    get_filename_component(abs ${proto} ABSOLUTE)
    get_filename_component(stem ${proto} NAME_WE)
    list(APPEND srcs ${out_dir}/${stem}.pb.cc)
    list(APPEND hdrs ${out_dir}/${stem}.pb.h)
    add_custom_command(
      OUTPUT ${out_dir}/${stem}.pb.cc ${out_dir}/${stem}.pb.h
      COMMAND protobuf::protoc
      ARGS --cpp_out=${out_dir} -I ${CMAKE_CURRENT_SOURCE_DIR} ${abs}
      DEPENDS ${abs} protobuf::protoc
      COMMENT "protoc ${proto}"
      VERBATIM)
  endforeach()
  add_library(${target} STATIC ${srcs} ${hdrs})
  target_include_directories(${target} PUBLIC ${CMAKE_BINARY_DIR}/gen)
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf)
endfunction()
