# kiln_proto_library(<target> PROTOS <files...> [GRPC_PROTOS <files...>] [IMPORT_DIRS <dirs...>]
#                    [DEPS <targets...>])
# Compiles .proto files with protoc (GRPC_PROTOS with gRPC's C++ plugin too) into a static
# library. A file's outputs land in ${CMAKE_BINARY_DIR}/gen/proto/<its path relative to the
# import directory that holds it>; kiln code includes them as "proto/<path>.pb.h".
function(kiln_proto_library target)
  cmake_parse_arguments(ARG "" "" "PROTOS;GRPC_PROTOS;IMPORT_DIRS;DEPS" ${ARGN})
  set(gen_dir ${CMAKE_BINARY_DIR}/gen)
  set(import_dirs ${CMAKE_CURRENT_SOURCE_DIR} ${ARG_IMPORT_DIRS})
  set(import_args)
  foreach(dir ${import_dirs})
    list(APPEND import_args -I ${dir})
  endforeach()

  set(outputs)
  foreach(proto ${ARG_PROTOS} ${ARG_GRPC_PROTOS})
    get_filename_component(abs ${proto} ABSOLUTE)
    # The path of the .proto relative to the import directory that holds it.
    set(rel "")
    foreach(dir ${import_dirs})
      file(RELATIVE_PATH candidate ${dir} ${abs})
      if(NOT candidate MATCHES "^\\.\\.")
        set(rel ${candidate})
        break()
      endif()
    endforeach()
    string(REGEX REPLACE "\\.proto$" "" stem ${rel})
    set(outs ${gen_dir}/proto/${stem}.pb.cc ${gen_dir}/proto/${stem}.pb.h)
    set(plugin_args)
    set(plugin_deps)
    if(proto IN_LIST ARG_GRPC_PROTOS)
      list(APPEND outs ${gen_dir}/proto/${stem}.grpc.pb.cc ${gen_dir}/proto/${stem}.grpc.pb.h)
      set(plugin_args --grpc_out=${gen_dir}/proto
                      --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>)
      set(plugin_deps gRPC::grpc_cpp_plugin)
    endif()
    add_custom_command(
      OUTPUT ${outs}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${gen_dir}/proto
      COMMAND protobuf::protoc --cpp_out=${gen_dir}/proto ${plugin_args} ${import_args} ${abs}
      DEPENDS ${abs} protobuf::protoc ${plugin_deps}
      COMMENT "protoc ${rel}"
      VERBATIM)
    list(APPEND outputs ${outs})
  endforeach()

  add_library(${target} STATIC ${outputs})
  # Generated code includes its siblings by their path relative to the import dir
  # (gen/proto/...), and kiln code includes them as "proto/<name>.pb.h".
  target_include_directories(${target} SYSTEM PUBLIC ${gen_dir} ${gen_dir}/proto)
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf ${ARG_DEPS})
endfunction()
