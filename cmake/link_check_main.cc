// The main of server/CMakeLists.txt's kiln_link_check executables: they exist to be linked (every
// object of one library, whole archive, with only what that library may use), never run.
int main() { return 0; }
