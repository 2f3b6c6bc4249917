import SwiftUI

@main
struct TFAlignDemoApp: App {
    var body: some Scene {
        WindowGroup { ContentView() }
    }
}
